"""DICOM Segmentation (SEG) output that references the ultrasound image it was computed from.

highdicom builds the SEG. One gap needs a workaround: highdicom (<= 0.28, issue
ImagingDataCommons/highdicom#284, open) refuses multi-frame sources without a spatial coordinate
system ("Only a single frame is supported when the source image has no Frame of Reference UID") and
crashes on US Multi-frame sources without functional groups. That is every ultrasound cine loop: US
images carry no ImageOrientation/PositionPatient, hence no PlaneOrientation/PixelMeasures either.

For those sources :class:`_CineSegmentation` lets highdicom do everything except the per-frame
spatial bookkeeping, which it overrides:

* one SEG frame per (source frame, segment), each with a DerivationImageSequence item referencing the
  source SOP instance *and* its ReferencedFrameNumber (so viewers / ``get_pixels_by_source_frame``
  find the frame);
* no PlaneOrientation / PlanePosition (as highdicom does for single-frame sources without a frame of
  reference: there is no patient geometry to state); PixelMeasures as for single frames (below);
* a second dimension index, FrameContentSequence > TemporalPositionIndex (= source frame number), next
  to ReferencedSegmentNumber so every SEG frame has unique DimensionIndexValues.

Several frames under a single-frame SOP Class (e.g. Ultrasound Image Storage with NumberOfFrames 2, as
older scanners and converters write; pydicom-data's ``OBXXXX1A_2frame.dcm``): ReferencedFrameNumber
is for references to multi-frame SOP Classes (Image SOP Instance Reference Macro, PS3.3 Table 10-3;
dciodvfy rejects it otherwise), and highdicom decides "multi-frame" by SOP Class as well. Such a SEG
keeps one frame per source frame and per segment, references the instance *without* a frame number,
and says which source frame it is through the Temporal Position Index dimension alone (``read_dicom_seg``
and highdicom's ``get_pixels_by_dimension_index_values`` read it back that way).
The frames are not treated as separate images: they share one SOP Instance UID, so no reference could
tell them apart.

It relies on three private highdicom hooks (``_prepare_spatial_metadata``, ``_get_pffg_item``,
``_get_derivation_source_image_item``); highdicom is pinned (constraints.txt) and
tests/test_dicom_seg.py round-trips real vendor cine files through ``segread``.

Pixel spacing: when the source is calibrated (PixelSpacing, or the ultrasound region calibration that
sonoseg measures with, :func:`sonoseg.io.dicom.calibration`), the SEG carries it in the shared
PixelMeasuresSequence, so a viewer measuring on the SEG gets sonoseg's millimetres. ImagerPixelSpacing
(detector plane, projection radiography) is not a spacing in the patient and is not copied. Slice
Thickness: the standard makes it optional in a SEG without a Frame of Reference (PS3.3 C.7.6.16.2.1:
required only for Segmentation Storage *with* a Frame of Reference UID, "may be present otherwise", and
non-zero when present), but highdicom 0.28 cannot read a PixelMeasures item without it
(``PixelMeasuresSequence.from_sequence``). It is therefore the source's SliceThickness when it has one,
else :data:`NOMINAL_SLICE_THICKNESS_MM` = 1 mm: a 2D ultrasound frame states no elevational thickness,
and a unit slab makes any "volume" a viewer derives from a 2D segment read as its area in mm².

Privacy: the source header is reduced before highdicom copies its Patient and Study modules
(:func:`sonoseg.outputs.dicom_source.source_proxy`; the module says what is kept). Nothing here logs header values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from highdicom.spatial import get_image_coordinate_system
from highdicom.utils import is_multiframe_image
from pydicom.uid import generate_uid

from sonoseg import __version__
from sonoseg.errors import ConfigError, InputError
from sonoseg.outputs.seg_class_codes import CLASS_SCHEME, add_class_finding, declare_local_scheme  # noqa: F401
from sonoseg.outputs.dicom_source import NOMINAL_SLICE_THICKNESS_MM  # noqa: F401 (callers import it from here)
from sonoseg.outputs.dicom_source import (SourceLike, frames_of, pixel_measures_for, read_source,
                                          source_instance_number, source_proxy)
from sonoseg.outputs.seg_legacy import RETIRED_SUCCESSOR, restore_referenced_classes, with_current_class

_MAS = codes.SCT.MorphologicallyAbnormalStructure
_ANAT = codes.SCT.AnatomicalStructure
# segment name (lower case) -> (segmented property category, segmented property type)
PROPERTY_CODES = {
    "lesion": (_MAS, codes.SCT.Lesion),
    "mass": (_MAS, codes.SCT.Mass),
    "tumor": (_MAS, codes.SCT.Neoplasm),
    "tumour": (_MAS, codes.SCT.Neoplasm),
    "neoplasm": (_MAS, codes.SCT.Neoplasm),
    "nodule": (_MAS, codes.SCT.Nodule),
    "cyst": (_MAS, codes.SCT.Cyst),
    "plaque": (_MAS, codes.SCT.Plaque),
    "head": (_ANAT, codes.SCT.Head),
    "fetal head": (_ANAT, codes.SCT.Head),
    "abdomen": (_ANAT, codes.SCT.Abdomen),
    "femur": (_ANAT, codes.SCT.Femur),
    "breast": (_ANAT, codes.SCT.Breast),
    "thyroid": (_ANAT, codes.SCT.Thyroid),
    "liver": (_ANAT, codes.SCT.Liver),
    "kidney": (_ANAT, codes.SCT.Kidney),
    "gallbladder": (_ANAT, codes.SCT.Gallbladder),
    "heart": (_ANAT, codes.SCT.Heart),
    "left ventricle": (_ANAT, codes.SCT.LeftVentricle),
    "artery": (_ANAT, codes.SCT.Artery),
    "blood vessel": (_ANAT, codes.SCT.BloodVessel),
    "lymph node": (_ANAT, codes.SCT.LymphNode),
    # abdominal organs of the 3D CT path (TotalSegmentator-style names: "kidney_left" -> Kidney + Left)
    "spleen": (_ANAT, codes.SCT.Spleen),
    "stomach": (_ANAT, codes.SCT.Stomach),
    "aorta": (_ANAT, codes.SCT.Aorta),
    "pancreas": (_ANAT, codes.SCT.Pancreas),
    "esophagus": (_ANAT, codes.SCT.Esophagus),
    "inferior vena cava": (_ANAT, codes.SCT.InferiorVenaCava),
    "portal vein and splenic vein": (_ANAT, codes.SCT.PortalVein),
    "portal vein": (_ANAT, codes.SCT.PortalVein),
    "duodenum": (_ANAT, codes.SCT.Duodenum),
    "adrenal gland": (_ANAT, codes.SCT.AdrenalGland),
    "lung": (_ANAT, codes.SCT.Lung),
    "colon": (_ANAT, codes.SCT.Colon),
    "small bowel": (_ANAT, codes.SCT.SmallIntestine),
}
LATERALITY = {"left": codes.SCT.Left, "right": codes.SCT.Right}


def property_codes_for(name: str):
    """(category, type, laterality Code or None) for a segment name; "kidney_left" -> Kidney, Left."""
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    if key in PROPERTY_CODES:
        return (*PROPERTY_CODES[key], None)
    for side, code in LATERALITY.items():
        for base in (key.removesuffix(" " + side), key.removeprefix(side + " ")):
            if base != key and base in PROPERTY_CODES:
                return (*PROPERTY_CODES[base], code)
    return (*GENERIC_CODES, None)
GENERIC_CODES = (codes.SCT.Tissue, codes.SCT.Tissue)  # unknown names ("class 2"): generic tissue

_TEMPORAL_POSITION_INDEX = 0x00209128
_FRAME_CONTENT_SEQUENCE = 0x00209111


class _CineSegmentation(hd.seg.Segmentation):
    """Segmentation of a multi-frame source that has no patient coordinate system (see module doc).

    Construct with :meth:`build`; ``source`` must be a metadata proxy whose NumberOfFrames is 1 (to pass
    highdicom's single-frame guard), the real frame numbers go in ``frame_numbers``.
    """

    @classmethod
    def build(cls, frame_numbers: Sequence[int], *args, reference_frames: bool = True,
              **kwargs) -> "_CineSegmentation":
        """``reference_frames=False`` for a source whose SOP Class is a single-frame one (see the module
        doc): the source frame is then stated by the Temporal Position Index only."""
        obj = cls.__new__(cls)
        obj.__dict__["_sonoseg_frame_numbers"] = [int(n) for n in frame_numbers]
        obj.__dict__["_sonoseg_reference_frames"] = bool(reference_frames)
        obj.__dict__["_sonoseg_frame_of_items"] = {}
        cls.__init__(obj, *args, **kwargs)
        return obj

    def _prepare_spatial_metadata(self, **kwargs):  # noqa: D401 (highdicom hook)
        numbers = self.__dict__["_sonoseg_frame_numbers"]
        src = kwargs["source_images"][0]
        if kwargs["number_of_planes"] != len(numbers):
            raise ValueError("internal: planes and frame numbers differ")
        # second dimension: temporal position (source frame number) in FrameContentSequence
        dim = Dataset()
        dim.DimensionOrganizationUID = self.DimensionIndexSequence[0].DimensionOrganizationUID
        dim.DimensionIndexPointer = _TEMPORAL_POSITION_INDEX
        dim.FunctionalGroupPointer = _FRAME_CONTENT_SEQUENCE
        dim.DimensionDescriptionLabel = "Temporal Position Index"
        self.DimensionIndexSequence.append(dim)
        with_frame = self.__dict__["_sonoseg_reference_frames"]
        items = [
            [self._get_derivation_source_image_item(source_image=src, frame_number=n if with_frame else None,
                                                    locations_preserved=True)]
            for n in numbers
        ]
        # highdicom hands each plane's item list back to _get_pffg_item: its source frame, by identity
        self.__dict__["_sonoseg_frame_of_items"].update({id(it): n for it, n in zip(items, numbers)})
        # plane positions, orientation, pixel measures, position values, tile positions, order, derivations
        return [None] * len(numbers), None, kwargs["pixel_measures"], np.empty((0,)), np.empty((0,)), np.arange(len(numbers)), items

    def _get_pffg_item(self, dimension_index_values, plane_position, derivation_source_image_items,
                       coordinate_system, derivation):
        item = hd.seg.Segmentation._get_pffg_item(dimension_index_values, plane_position,
                                                  derivation_source_image_items, coordinate_system, derivation)
        n = self.__dict__["_sonoseg_frame_of_items"].get(id(derivation_source_image_items))
        if n is not None:
            fc = item.FrameContentSequence[0]
            fc.add(DataElement(0x00209157, "UL", [*dimension_index_values, n]))
            fc.add(DataElement(_TEMPORAL_POSITION_INDEX, "UL", n))
        return item


def _segment_descriptions(labels: Mapping[int, str], numbers: Mapping[int, int], algorithm_name: str,
                          algorithm_version: str, property_codes, display=None) -> list:
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=str(algorithm_version), family=codes.cid7162.ArtificialIntelligence
    )
    out = []
    for value in sorted(labels):
        name = str(labels[value])
        given = (property_codes or {}).get(value)
        cat, typ, side = (*given, None) if given else property_codes_for(name)
        shown = (display or {}).get(value)  # ((r, g, b), description) or None
        out.append(
            hd.seg.SegmentDescription(
                segment_number=numbers[value],
                segment_label=name[:64],
                segmented_property_category=cat,
                segmented_property_type=typ,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                display_color=hd.color.CIELabColor.from_rgb(*shown[0]) if shown else None,
            )
        )
        if shown:
            out[-1].SegmentDescription = str(shown[1])[:64]
        if side is not None:  # laterality as a modifier of the property type (DICOM CID 244)
            out[-1].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(value=side.value, scheme_designator=side.scheme_designator, meaning=side.meaning)]
    return out


def _multiframe_class(ds: Dataset) -> bool:
    """Whether the source's SOP Class is a multi-frame one (its IOD has Number of Frames), which alone
    decides if a SEG may cite its frames by ReferencedFrameNumber; unknown (private) classes: assumed."""
    try:
        return bool(is_multiframe_image(ds))
    except KeyError:
        return True


SEG_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")


@dataclass(frozen=True)
class SegWriteOptions:
    """How :func:`write_dicom_seg` writes a SEG; the defaults write a BINARY "lesion" SEG of every frame.

    ``labels``: label value -> segment name of the masks (default ``{1: "lesion"}``); names map to
    SNOMED CT property category/type codes (:data:`PROPERTY_CODES`; unknown names -> Tissue), or give
    ``property_codes`` {label: (category Code, type Code)}. ``segment_display`` {label: ((r, g, b),
    description)}: the segment's recommended display colour and SegmentDescription (the 3D label
    table's). ``segmentation_type``: BINARY | FRACTIONAL (a float probability map of one segment) |
    LABELMAP; BINARY/FRACTIONAL segment numbers are 1..N in label order, LABELMAP keeps the label
    values. ``frame_indices``: 0-based source frames that the F mask frames belong to (default: all
    frames, in order). ``omit_empty_frames=False`` stores empty frames too, so the SEG states that
    every listed frame was analysed and has no finding, rather than leaving it unknown.
    ``finding``: the image-level decision of :mod:`sonoseg.infer.decision` (class head), written as a
    coded modifier of each segment's property type (:mod:`sonoseg.outputs.seg_class_codes`).
    ``seed_uid`` makes the SEG's UIDs deterministic; ``series_instance_uid`` puts the SEG into a given
    series (several SEGs of one source series, one per image, in one SEG series: see
    :mod:`sonoseg.infer.run`). ``instance_number``: default the source's InstanceNumber, so the SEGs
    of a series sort as their images do.
    """

    labels: Optional[Mapping[int, str]] = None
    segmentation_type: str = "BINARY"
    frame_indices: Optional[Sequence[int]] = None
    omit_empty_frames: bool = False
    property_codes: Optional[Mapping[int, tuple]] = None
    segment_display: Optional[Mapping[int, tuple]] = None
    finding: Optional[Mapping] = None
    algorithm_name: str = "sonoseg"
    algorithm_version: str = __version__
    series_description: str = "sonoseg segmentation"
    series_number: int = 900
    seed_uid: Optional[str] = None
    series_instance_uid: Optional[str] = None
    instance_number: Optional[int] = None

    def __post_init__(self) -> None:
        kind = str(self.segmentation_type).upper()
        if kind not in SEG_TYPES:
            raise ConfigError(f"segmentation type {self.segmentation_type!r}: use one of {', '.join(SEG_TYPES)}")
        object.__setattr__(self, "segmentation_type", kind)


def write_dicom_seg(
    source_path_or_datasets: Union[SourceLike, Sequence[SourceLike]],
    masks: np.ndarray,
    out_path: Union[str, Path],
    options: Optional[SegWriteOptions] = None,
) -> Path:
    """Write a DICOM SEG for ``masks`` derived from one source image (single- or multi-frame), or from
    several single-frame images with a frame of reference (one mask frame each).

    ``masks``: H×W or F×H×W, binary or a label map whose non-zero values are keys of the options'
    ``labels``; for FRACTIONAL a float probability map of one segment. What is written and how:
    :class:`SegWriteOptions`.
    """
    o = options or SegWriteOptions()
    out_path = Path(out_path)
    srcs = (list(source_path_or_datasets) if isinstance(source_path_or_datasets, (list, tuple))
            else [source_path_or_datasets])
    if not srcs:
        raise InputError(out_path, "no source image given")
    loaded = [read_source(s) for s in srcs]
    retired = {str(d.SOPInstanceUID): str(d.SOPClassUID) for d, _ in loaded
               if str(d.get("SOPClassUID", "")) in RETIRED_SUCCESSOR and "SOPInstanceUID" in d}
    loaded = [(with_current_class(d)[0], n) for d, n in loaded]  # highdicom knows no retired class
    ds, name = loaded[0]
    seg_type = hd.seg.SegmentationTypeValues(o.segmentation_type)
    labels = {int(k): str(v) for k, v in o.labels.items()} if o.labels else {1: "lesion"}
    if any(k < 1 for k in labels):
        raise InputError(name, "label values must be >= 1 (0 is background)")

    arr, numbers = _segment_array(masks, ds, name, labels, seg_type)
    common = _seg_arguments(o, ds, len(loaded), labels, numbers, seg_type)
    seg = _build_segmentation(loaded, arr, common, o.frame_indices, name)

    restore_referenced_classes(seg, retired)
    seg.SeriesDescription = o.series_description[:64]
    declare_local_scheme(seg)
    if "PatientOrientation" not in seg and "ImageOrientationPatient" not in ds:
        # General Image, Type 2C: required when the image has no ImageOrientation/Position (Patient),
        # as in every ultrasound image; the source's value (row/column directions) or empty = unknown
        seg.PatientOrientation = ds.get("PatientOrientation") or ""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out_path)
    return out_path


def _segment_array(masks, ds: Dataset, name: str, labels: dict, seg_type) -> tuple[np.ndarray, dict]:
    """``masks`` checked against the image and the labels, as highdicom takes it (F x H x W; consecutive segment
    numbers for BINARY, label values for LABELMAP, probabilities for FRACTIONAL), and label -> segment number."""
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(name, f"mask must be HxW or FxHxW, got shape {arr.shape}")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if arr.shape[1:] != (rows, cols):
        raise InputError(name, f"mask is {arr.shape[1]}x{arr.shape[2]} but the image is {rows}x{cols}")

    if seg_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        if len(labels) != 1:
            raise InputError(name, "FRACTIONAL SEG holds one segment: pass a single label")
        arr = arr.astype(np.float32)
        if arr.size and (arr.min() < 0 or arr.max() > 1 or not np.isfinite(arr).all()):
            raise InputError(name, "FRACTIONAL masks must be probabilities in [0, 1]")
        numbers = {int(next(iter(labels))): 1}
    else:
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.array_equal(arr, np.round(arr)):
                raise InputError(name, "mask has non-integer values: threshold before writing a SEG")
        present = {int(v) for v in np.unique(arr)} - {0}
        unknown = present - {int(k) for k in labels}
        if unknown:
            raise InputError(name, f"mask has labels {sorted(unknown)} with no segment name")
        if seg_type == hd.seg.SegmentationTypeValues.LABELMAP:
            numbers = {int(v): int(v) for v in labels}
            arr = arr.astype(np.uint16 if max(numbers) > 255 else np.uint8)
        else:
            numbers = {int(v): i for i, v in enumerate(sorted(labels), start=1)}
            if any(k != v for k, v in numbers.items()):  # remap to consecutive segment numbers
                lut = np.zeros(max(numbers) + 1, np.uint16)
                for k, v in numbers.items():
                    lut[k] = v
                arr = lut[arr.astype(np.int64)]
            arr = arr.astype(np.uint8 if len(numbers) < 256 else np.uint16)
    return arr, numbers


def _seg_arguments(o: SegWriteOptions, ds: Dataset, n_sources: int, labels: dict, numbers: dict, seg_type) -> dict:
    """highdicom's Segmentation keywords common to every source layout: segments, series, instance, device."""
    descriptions = _segment_descriptions(labels, numbers, o.algorithm_name, o.algorithm_version, o.property_codes,
                                         o.segment_display)
    if o.finding is not None and o.finding.get("class") is not None:
        for d in descriptions:
            add_class_finding(d, o.finding)
    common = dict(
        segmentation_type=seg_type,
        segment_descriptions=descriptions,
        series_instance_uid=o.series_instance_uid or _seeded(o.seed_uid, "series"),
        series_number=int(o.series_number),
        sop_instance_uid=_seeded(o.seed_uid, "sop"),
        instance_number=(int(o.instance_number) if o.instance_number is not None
                         else source_instance_number(ds) if n_sources == 1 else 1),
        manufacturer="sonoseg",
        manufacturer_model_name=o.algorithm_name,
        software_versions=str(o.algorithm_version),
        device_serial_number="none",
        content_label="SONOSEG",
        content_description=f"{o.algorithm_name} {o.algorithm_version} automatic segmentation"[:64],
        omit_empty_frames=o.omit_empty_frames,
    )
    if seg_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        common["fractional_type"] = hd.seg.SegmentationFractionalTypeValues.PROBABILITY

    return common


def _build_segmentation(loaded: list, arr: np.ndarray, common: dict, frame_indices, name: str):
    """The Segmentation for the source layout: several single-frame images with a frame of reference, a cine
    without geometry (frames referenced by number), an enhanced multi-frame with plane positions, one frame."""
    ds = loaded[0][0]
    rows, cols = int(ds.Rows), int(ds.Columns)
    n_src = frames_of(ds)
    try:
        no_geometry = get_image_coordinate_system(ds) is None
        multiframe = n_src > 1 or is_multiframe_image(ds)  # KeyError for SOP classes highdicom lacks
        if no_geometry:
            common["pixel_measures"] = pixel_measures_for(ds)
        if len(loaded) > 1:
            if no_geometry:
                raise InputError(name, "several single-frame sources without a frame of reference: "
                                       "write one SEG per image")
            if frame_indices is not None or arr.shape[0] != len(loaded):
                raise InputError(name, f"{arr.shape[0]} mask frames for {len(loaded)} source images")
            seg = hd.seg.Segmentation([source_proxy(d, n) for d, n in loaded], arr, **common)
        elif multiframe and no_geometry:
            idx = list(range(n_src)) if frame_indices is None else [int(i) for i in frame_indices]
            _check_indices(idx, arr.shape[0], n_src, name)
            proxy = source_proxy(ds, name, no_geometry)
            del proxy.NumberOfFrames  # highdicom's single-frame guard; real frames are referenced by number
            proxy.NumberOfFrames = 1
            seg = _CineSegmentation.build([i + 1 for i in idx], [proxy], arr,
                                          reference_frames=_multiframe_class(ds), **common)
        elif multiframe:  # enhanced multi-frame with plane positions: highdicom's own path, all frames
            idx = list(range(n_src)) if frame_indices is None else [int(i) for i in frame_indices]
            _check_indices(idx, arr.shape[0], n_src, name)
            full = arr
            if idx != list(range(n_src)):
                full = np.zeros((n_src, rows, cols), arr.dtype)
                full[idx] = arr
                common["omit_empty_frames"] = True  # frames that were not analysed are left out
            seg = hd.seg.Segmentation([source_proxy(ds, name)], full, **common)
        else:
            if arr.shape[0] != 1 or (frame_indices is not None and list(frame_indices) != [0]):
                raise InputError(name, f"single-frame image but {arr.shape[0]} mask frames")
            seg = hd.seg.Segmentation([source_proxy(ds, name, no_geometry)], arr[0], **common)
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(name, f"cannot build DICOM SEG: {str(exc).splitlines()[0][:200]}") from None
    return seg


def _seeded(seed: Optional[str], role: str) -> str:
    return generate_uid(entropy_srcs=[str(seed), "seg", role]) if seed is not None else hd.UID()


def _check_indices(idx: list[int], n_masks: int, n_src: int, name: str) -> None:
    if len(idx) != n_masks:
        raise InputError(name, f"{n_masks} mask frames but {len(idx)} frame indices"
                               f" (source has {n_src} frames)")
    if len(set(idx)) != len(idx) or any(i < 0 or i >= n_src for i in idx):
        raise InputError(name, f"frame indices must be unique and within 0..{n_src - 1}")


def read_dicom_seg(seg_path: Union[str, Path], source_frames: Optional[Sequence[int]] = None) -> np.ndarray:
    """Label map (F×H×W, uint8/uint16, segment numbers as values) of a SEG per referenced source frame.

    ``source_frames`` are 0-based source frame indices (default: frame 0 .. highest referenced, or the
    single frame of a single-frame source); source frames without SEG frames read as empty.
    """
    seg = hd.seg.segread(str(seg_path))
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    uid = ref.ReferencedSOPInstanceUID
    numbers, temporal = set(), set()
    for item in seg.PerFrameFunctionalGroupsSequence:
        for d in item.get("DerivationImageSequence", []) or []:
            for s in d.get("SourceImageSequence", []) or []:
                if "ReferencedFrameNumber" in s:
                    numbers.add(int(s.ReferencedFrameNumber))
        for fc in item.get("FrameContentSequence", []) or []:
            if "TemporalPositionIndex" in fc:
                temporal.add(int(fc.TemporalPositionIndex))
    if not numbers and temporal:  # frames of a single-frame-class source: by temporal position (module doc)
        frames = (list(range(max(temporal))) if source_frames is None else [int(i) for i in source_frames])
        return seg.get_pixels_by_dimension_index_values(
            [[i + 1] for i in frames], dimension_index_pointers=[_TEMPORAL_POSITION_INDEX], combine_segments=True,
            assert_missing_frames_are_empty=True, skip_overlap_checks=True)
    if not numbers:
        return seg.get_pixels_by_source_instance([uid], combine_segments=True, skip_overlap_checks=True)
    frames = (list(range(max(numbers))) if source_frames is None else [int(i) for i in source_frames])
    return seg.get_pixels_by_source_frame(
        uid, [i + 1 for i in frames], combine_segments=True, assert_missing_frames_are_empty=True,
        skip_overlap_checks=True,
    )

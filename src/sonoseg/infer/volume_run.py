"""``sonoseg predict`` for 3D models: each input volume (NIfTI file or DICOM series folder) ->
``<stem>.labels.nii.gz`` (original grid and affine, the training label values), its label table
(``<stem>.labels.txt`` for ITK-SNAP, ``<stem>.labels.ctbl`` for 3D Slicer), ``<stem>.measurements.json``
(per organ), an axial overlay PNG with a legend, and for DICOM input a multi-segment DICOM SEG
referencing the source series, its segments numbered and coloured as the label table. One bad input
is reported and the rest continue (results.json lists all)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from sonoseg.errors import InputError, SonosegError, reason


def series_sources(folder: Path, volume) -> list[Path]:
    """The DICOM files of ``volume``'s series in the volume's slice order (by position along the
    volume's own z axis, from the RAS affine), for the SEG's per-frame references."""
    import pydicom

    from sonoseg.io.detect import detect_format, find_inputs
    from sonoseg.io.series import LPS_TO_RAS

    inv = np.linalg.inv(np.asarray(volume.affine, float))
    uid = getattr(volume.meta, "series_uid", None)
    by_k: dict[int, Path] = {}
    files = [folder] if folder.is_file() else [f for f in find_inputs([folder], recursive=True) if detect_format(f) == "dicom"]
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if uid and str(ds.get("SeriesInstanceUID", "")) != uid:
            continue
        ipp = ds.get("ImagePositionPatient")
        if ipp is None:
            raise InputError(f, "no ImagePositionPatient: cannot place the slice in the SEG")
        ras = LPS_TO_RAS @ np.array([float(v) for v in ipp] + [1.0])
        k = int(round(float((inv @ ras)[2])))
        by_k[k] = f
    n = volume.array.shape[0]
    if sorted(by_k) != list(range(n)):
        raise InputError(folder, f"{len(by_k)} slice files do not match the volume's {n} slices")
    return [by_k[k] for k in range(n)]


def _source_headers(files: list[Path]) -> tuple[list, list[str]]:
    """Slice headers for the SEG's references. Anonymised series often blank their UIDs: the SOP class
    and instance come back from each file's meta header (the file's own identity); a missing study or
    series UID is generated from the Frame of Reference (deterministic) and said in a warning, since a
    viewer will then not file the SEG under the source study."""
    import pydicom
    from pydicom.uid import generate_uid

    headers, notes = [], []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        fm = getattr(ds, "file_meta", None)
        for kw, meta_kw in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not str(ds.get(kw, "") or "") and fm is not None and fm.get(meta_kw):
                setattr(ds, kw, str(fm.get(meta_kw)))
        for kw in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(kw, "") or ""):
                setattr(ds, kw, generate_uid(entropy_srcs=[str(ds.get("FrameOfReferenceUID", "")), kw]))
                note = f"source series has no {kw}: the SEG refers to a generated one"
                if note not in notes:
                    notes.append(note)
        headers.append(ds)
    return headers, notes


def write_volume_seg(source: Path, volume, labels_zyx: np.ndarray, entries: list, out_path: Path,
                     model_version: str) -> tuple[Path, list[str]]:
    """Multi-segment DICOM SEG (BINARY, empty frames omitted) referencing every slice of the source
    series; ``labels_zyx`` holds the label values of ``entries`` (:mod:`sonoseg.outputs.label_table`).
    Every label of the model is a segment, numbered as its row in the label table (1..K), so a segment
    number means the same organ in every SEG of one model, with the table's name and colour, and the
    label value in its description; an organ not found is a segment without frames. Returns (path, notes)."""
    from sonoseg.outputs.dicom_seg import SegWriteOptions, write_dicom_seg

    if not any((labels_zyx == e.value).any() for e in entries):
        raise InputError(source, "no organ found: no DICOM SEG written")
    headers, notes = _source_headers(series_sources(source, volume))
    found = {e.value for e in entries if (labels_zyx == e.value).any()}
    display = {e.value: (e.color, f"label {e.value} of the label map" + ("" if e.value in found else "; not found"))
               for e in entries}
    path = write_dicom_seg(headers, labels_zyx, out_path, SegWriteOptions(
        labels={e.value: e.name for e in entries}, algorithm_version=str(model_version), segmentation_type="BINARY",
        omit_empty_frames=True, series_description="sonoseg organ segmentation", segment_display=display))
    return path, notes


def predict_volume_file(predictor, path: Path, out: Path, stem: str, write_seg: bool = True) -> dict:
    """One input -> outputs in ``out``; returns its results.json record."""
    from sonoseg.outputs.label_table import as_json, label_table, write_label_tables
    from sonoseg.infer.outputs import write_json
    from sonoseg.infer.volume_measure import measure_organs
    from sonoseg.infer.volume_overlay import write_volume_overlay
    from sonoseg.io import write_nifti
    from sonoseg.preprocess.volume import read_volume

    t0 = time.perf_counter()
    volume = read_volume(path)
    pred = predictor.predict(volume)
    labels = predictor.label_values(pred.labels)  # the training label values, not the model's 1..K
    names = predictor.label_names
    entries = label_table(names)
    rec = {"input": str(path), "ok": True, "kind": "volume3d", "frames": int(volume.array.shape[0]),
           "shape_xyz": list(volume.array.shape[::-1]), "spacing_xyz_mm": [round(v, 4) for v in volume.spacing[::-1]],
           "model_grid_xyz": list(pred.model_grid_shape), "model_grid_spacing_mm": [round(v, 4) for v in pred.model_grid_spacing],
           "outputs": {}, "warnings": []}
    rec["outputs"]["labels"] = str(write_nifti(labels, out / f"{stem}.labels.nii.gz", affine=volume.affine))
    rec["outputs"]["label_tables"] = write_label_tables(entries, out, stem)
    organs = measure_organs(labels, volume.affine, names)
    rec["organs"] = organs
    shown = write_volume_overlay(volume.array, labels, volume.affine, entries,
                                 predictor.config.volume.intensity_range(), out / f"{stem}.overlay.png")
    rec["outputs"]["overlay"] = str(shown.path)
    rec["overlay_slice"] = {"index_along_s": shown.slice_index, "s_mm": shown.position_mm, "labels": shown.on_slice}
    rec["outputs"]["measurements"] = str(write_json({"input": path.name, "model_version": predictor.model_version,
                                                     "labels": {str(k): v for k, v in names.items()},
                                                     "label_table": as_json(entries), "organs": organs},
                                                    out / f"{stem}.measurements.json"))
    rec["seg"] = None
    if write_seg and getattr(volume.meta, "format", None) == "dicom":
        try:
            seg_path, notes = write_volume_seg(path, volume, labels, entries, out / f"{stem}.seg.dcm",
                                               predictor.model_version)
            rec["seg"] = str(seg_path)
            rec["warnings"] += notes
        except SonosegError as exc:
            rec["warnings"].append(f"no DICOM SEG: {exc}")
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def predict_volumes(inputs: list[str | Path], out_dir: str | Path, model: str | Path, threads: Optional[int] = None,
                    write_seg: bool = True, log: Callable[[str], None] = print,
                    progress: Optional[Callable[[str, int, int], None]] = None,
                    keep_largest: Optional[bool] = None) -> dict:
    """Every input through a 3D model; writes and returns results.json's payload."""
    from sonoseg.infer.outputs import unique_stem, write_json
    from sonoseg.infer.volume import VolumePredictor
    from sonoseg.system import apply_threads, resolve_threads

    n_threads = apply_threads(resolve_threads(threads, warn=log))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictor = VolumePredictor.from_checkpoint(model)
    if keep_largest is not None:
        predictor.keep_largest = keep_largest
    results, taken = [], set()
    paths = [Path(p) for p in inputs]
    for k, path in enumerate(paths):
        stem = unique_stem(out, path, taken)
        try:
            rec = predict_volume_file(predictor, path, out, stem, write_seg)
        except SonosegError as exc:
            rec = {"input": str(path), "ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one bad volume must not stop the batch
            rec = {"input": str(path), "ok": False, "error": f"{path}: {reason(exc)}"}
        results.append(rec)
        log(("ok   " if rec["ok"] else "FAIL ") + (f"{path.name}" if rec["ok"] else rec["error"]))
        if progress is not None:
            progress(path.name, k + 1, len(paths))
    payload = {"model": str(model), "model_version": predictor.model_version, "kind": "volume3d",
               "keep_largest": predictor.keep_largest,
               "labels": {str(k): v for k, v in predictor.label_names.items()}, "threads": n_threads,
               "n_inputs": len(results), "n_ok": sum(r["ok"] for r in results),
               "n_failed": sum(not r["ok"] for r in results), "results": results}
    write_json(payload, out / "results.json")
    return payload

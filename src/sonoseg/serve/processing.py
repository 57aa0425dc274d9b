"""One job: the spooled upload -> sonoseg's ``predict`` -> one stored result (or a failure reason).

The viewer needs each frame as a picture: frames (source image + mask layer) are rendered to PNGs
here, evenly sampled up to ``max_frames`` for long cines."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sonoseg.store import Store
from sonoseg.store.models import CLASSES, Job
from sonoseg.store.pseudonym import identify
from sonoseg.store.results import ArtefactIn, ResultIn, save_result

MEDIA = {".png": "image/png", ".nii.gz": "application/gzip", ".json": "application/json", ".dcm": "application/dicom"}
MASK_RGBA = (230, 159, 0, 255)  # same orange as predict's overlay


@dataclass
class ModelInfo:
    name: str
    version: str
    sha256: str


def model_info(path: Optional[Path], version: Optional[str] = None) -> ModelInfo:
    """Name, version and checksum stored with every result. ``version``: the model's own (e.g.
    "busi_default v3", from ``Predictor.model_version``); default: the sonoseg release."""
    from sonoseg import __version__
    from sonoseg.models.shipped import resolve_model

    p = resolve_model(path, "serve")
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return ModelInfo(p.name, version or __version__, h.hexdigest())


def classification(r: dict) -> tuple[Optional[str], Optional[dict]]:
    """Class and per-class probabilities, if this predict output carries them (under any of the
    names a classification head may use); labels outside normal/benign/malignant are ignored."""
    src = [r, r.get("summary") or {}, r.get("classification") or {}]
    label = next((d.get(k) for d in src for k in ("label", "class", "lesion_class", "predicted_class") if d.get(k)), None)
    probs = next((d.get(k) for d in src for k in ("probabilities", "class_probabilities", "probs") if d.get(k)), None)
    label = str(label).lower() if label is not None else None
    if label not in CLASSES:
        label = None
    if isinstance(probs, dict):
        probs = {str(k).lower(): float(v) for k, v in probs.items()}
    elif isinstance(probs, (list, tuple)) and len(probs) == len(CLASSES):
        probs = {c: float(v) for c, v in zip(CLASSES, probs)}
    else:
        probs = None
    return label, probs


def summarize(measurements: Path) -> dict:
    """The headline figures from a measurements file, for outputs that come without a summary
    (predict's NIfTI volume path)."""
    import json

    m = json.loads(measurements.read_text())
    per = m.get("frames") or m.get("slices") or [{"structures": m.get("structures") or []}]
    structs = [x for f in per for x in (f.get("structures") or [])]
    return {"frames_with_structures": sum(1 for f in per if f.get("structures")),
            "max_structures_per_frame": max((len(f.get("structures") or []) for f in per), default=0),
            "max_area": max((x.get("area") or 0.0 for x in structs), default=0.0),
            "max_diameter": max((x.get("max_diameter") or 0.0 for x in structs), default=0.0),
            "unit": m.get("unit", "px")}


def _frame_indices(n: int, max_frames: int) -> list[int]:
    return list(range(n)) if n <= max_frames else sorted({int(round(i)) for i in np.linspace(0, n - 1, max_frames)})


def _to_uint8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def _png(arr: np.ndarray) -> bytes:
    import cv2

    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _mask_layer(m: np.ndarray) -> np.ndarray:
    rgba = np.zeros(m.shape + (4,), np.uint8)
    rgba[m > 0] = MASK_RGBA
    return rgba


def _masks(kind: str, mask_path: Path):
    """Per-frame masks (HxW) from predict's mask file, as a function of the frame index."""
    if mask_path.name.endswith(".png"):
        import cv2

        m = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        return lambda i: m
    import nibabel as nib

    data = np.asanyarray(nib.load(str(mask_path)).dataobj)  # volume: x, y, slice; cine: x, y, 1, frame
    if data.ndim == 4:
        data = data[:, :, 0, :]
    return lambda i: np.asarray(data[:, :, i]).T


def render_frames(src: Path, kind: str, n: int, mask_path: Path, max_frames: int,
                  with_masks: bool = True) -> list[ArtefactIn]:
    """Frame pictures and their mask layers; ``with_masks`` False (out of scope): pictures only."""
    from sonoseg.io import iter_frames

    want = set(_frame_indices(n, max_frames))
    mask_of = _masks(kind, mask_path)
    out = []
    for i, frame in enumerate(iter_frames(src)):
        if i >= n:
            break
        if i in want:
            out.append(ArtefactIn("frame_image", "image/png", data=_png(_to_uint8(frame)), frame=i))
            if with_masks:
                out.append(ArtefactIn("frame_mask", "image/png", data=_png(_mask_layer(mask_of(i))), frame=i))
    return out


def run_job(store: Store, job: Job, predictor, model: ModelInfo, max_frames: int = 64,
            keep_identifiers: bool = False) -> int:
    """Predict one spooled upload and store its result in one transaction; returns the result id.
    Raises with a one-line reason on failure (the caller marks the job failed).

    The SEG is stored de-identified (store.deid); ``keep_identifiers`` also keeps it as written, with
    the source's identifiers ("seg_original", for admins, audited). An out-of-scope input is stored
    without class or probabilities and without mask layers for the viewer (no verdict)."""
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    src = store.find_spooled(job.id)
    if src is None:
        raise RuntimeError("uploaded file missing from the spool")
    out = Path(tempfile.mkdtemp(prefix=f"{job.id}-", dir=store.work))
    try:
        # the service's jobs: a SEG for DICOM uploads, the domain check on (the model is loaded once: ``predictor``)
        payload = predict_inputs([src], out / "pred", PredictOptions(write_seg=True, domain=True), predictor=predictor,
                                 log=lambda m: None)
        r = payload["results"][0]
        if not r["ok"] or not all(r.get(k) for k in ("mask", "overlay", "measurements")):  # partial: an output missing
            raise RuntimeError((r.get("error") or "prediction failed").replace(str(src), "upload"))
        s = r.get("summary") or summarize(Path(r["measurements"]))
        in_scope = s.get("in_scope")
        label, probs = (None, None) if in_scope is False else classification(r)
        sizes = {**s, **(s.get("withheld") or {})}  # out of scope: the withheld sizes, never shown unasked
        arts = [ArtefactIn("mask", MEDIA[".png"] if r["mask"].endswith(".png") else MEDIA[".nii.gz"], Path(r["mask"])),
                ArtefactIn("overlay", MEDIA[".png"], Path(r["overlay"])),
                ArtefactIn("measurements", MEDIA[".json"], Path(r["measurements"]))]
        if r.get("seg"):
            from sonoseg.store.deid import Deidentifier

            arts.append(ArtefactIn("seg", MEDIA[".dcm"], Deidentifier(store.secret).file(Path(r["seg"]), out / "seg.dcm")))
            if keep_identifiers:
                arts.append(ArtefactIn("seg_original", MEDIA[".dcm"], Path(r["seg"])))
        arts += render_frames(src, r["kind"], int(r["frames"]), Path(r["mask"]), max_frames, in_scope is not False)
        res = ResultIn(model_name=model.name, model_version=model.version, model_sha256=model.sha256,
                       kind=r["kind"], frames=int(r["frames"]), unit=s.get("unit", "mm"),
                       max_area=float(sizes.get("max_area") or 0.0), max_diameter=float(sizes.get("max_diameter") or 0.0),
                       summary=s, label=label, probabilities=probs, artefacts=arts, in_scope=in_scope,
                       scope_reason=s.get("scope_reason"))
        meta = {"frames": int(r["frames"])}
        ids = identify(src, job.format, store.secret, job.input_sha256)
        return save_result(store, job.id, ids, res, meta)
    finally:
        shutil.rmtree(out, ignore_errors=True)

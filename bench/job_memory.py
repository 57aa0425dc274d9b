#!/usr/bin/env python
"""Peak memory of one service job (the worker's ``run_job``: predict + SEG + frame renders) against
the estimate the upload check and the worker use (``sonoseg.serve.guard``), per input kind and size.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/job_memory.py            # table + bench/results/job_memory.json

Each input runs in a fresh process: the shipped model is loaded and warmed on a small image, then
growth = peak RSS (VmHWM) during the job - RSS (VmRSS) before it. The estimate must stay above it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _inputs(folder: Path) -> list[tuple[str, Path]]:
    import cv2
    import nibabel as nib
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian

    sys.path.insert(0, str(REPO / "tests"))
    from upload_bombs import _dicom_base

    out = []

    def img(h, w, c):
        a = np.zeros((h, w, c) if c == 3 else (h, w), np.uint8)
        cv2.circle(a, (w // 2, h // 2), min(h, w) // 6, (90, 90, 90) if c == 3 else 90, -1)
        return a

    for h, w, c in ((2000, 2000, 1), (4000, 4000, 1), (2000, 2000, 3), (4000, 3000, 3)):
        p = folder / f"png-{h}x{w}x{c}.png"
        cv2.imwrite(str(p), img(h, w, c))
        out.append((p.stem, p))
    for frames, h, w, c in ((100, 480, 640, 1), (300, 480, 640, 1), (100, 480, 640, 3)):
        ds = _dicom_base(h, w, frames, c)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = np.stack([img(h, w, c)] * frames).tobytes()
        p = folder / f"dicom-{frames}x{h}x{w}x{c}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append((p.stem, p))
    for shape, dt in (((256, 256, 100), np.uint8), ((512, 512, 100), np.int16)):
        p = folder / f"nifti-{'x'.join(map(str, shape))}-{np.dtype(dt).name}.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(shape, dt), np.eye(4)), str(p))
        out.append((p.stem, p))
    return out


def _one(path: str, fmt: str, q) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from sonoseg.serve.processing import run_job
    from sonoseg.serve.uploads import Spooled
    from sonoseg.serve.worker import load_model
    from sonoseg.store import Store, jobs

    import cv2
    import numpy as np

    st = Store(Path(tempfile.mkdtemp(prefix="sonoseg-jobmem-")) / "data")
    st.open()
    predictor, info = load_model(None)

    def job(src: Path, fmt: str):
        tmp = st.work / f"in{''.join(src.suffixes)}"
        tmp.write_bytes(src.read_bytes())
        jobs.enqueue(st, [Spooled(tmp, fmt, "0" * 64, tmp.stat().st_size)], "bench")
        with st.session() as s:
            j = jobs.claim_next(s)
        run_job(st, j, predictor, info)

    warm = st.work / "warm-src.png"
    cv2.imwrite(str(warm), np.zeros((64, 64), np.uint8))
    job(warm, "image")
    before = _status("VmRSS")
    job(Path(path), fmt)
    q.put((before, _status("VmHWM")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "job_memory.json")
    args = ap.parse_args()
    from sonoseg.serve.guard import MB, Limits, declared

    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sonoseg-jobmem-in-") as tmp:
        for name, p in _inputs(Path(tmp)):
            fmt = {".png": "image", ".dcm": "dicom", ".gz": "nifti"}[p.suffix]
            q = ctx.Queue()
            proc = ctx.Process(target=_one, args=(str(p), fmt, q))
            proc.start()
            before, peak = q.get(timeout=1800)
            proc.join()
            est = declared(p, fmt, Limits.of(1 << 20)).job_bytes()
            rows.append({"input": name, "growth_mb": round((peak - before) / MB), "estimate_mb": round(est / MB)})
            rows[-1]["ratio"] = round(rows[-1]["estimate_mb"] / max(rows[-1]["growth_mb"], 1), 2)
            print(f"{name:<28} growth {rows[-1]['growth_mb']:>6} MB   estimate {rows[-1]['estimate_mb']:>6} MB", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Ingest benchmark: sonoseg decode + preprocess vs MONAI LoadImage + transforms, and cine memory.

    .venv/bin/python bench/ingest.py                      # table on stdout, JSON in bench/results/ingest.json
    .venv/bin/python bench/ingest.py --busi 50 --rounds 3 --json /tmp/ingest.json

Throughput (images/s, single thread for both, best of --rounds passes over the same files):
  * sonoseg: ``load_image`` (pydicom/OpenCV) + ``preprocess_image`` with the default PreprocessConfig
    (grey -> ROI crop -> uint8 -> 3x3 median -> CLAHE -> min-max -> letterbox 256x256).
  * MONAI:   ``LoadImage`` (reader picked by MONAI) + EnsureChannelFirst -> channel mean (grey) ->
    ScaleIntensity -> MedianSmooth(radius=1) -> HistogramNormalize -> Resize(longest=256) ->
    ResizeWithPadOrCrop(256x256). MONAI has no CLAHE: HistogramNormalize (global equalisation)
    is the closest built-in, so MONAI does slightly less work; it also has no ROI step and returns
    palette-colour DICOMs as raw indices (no palette lookup).
Files: the single-frame US/OB DICOMs of pydicom-data, and --busi N BUSI PNGs when
../shared/data/busi (or $SONOSEG_DATA/busi) exists.

Memory (each case in its own process, so peak RSS is that case's alone): the 120-frame 480x640
YBR_FULL_422 JPEG cine color3d_jpeg_baseline.dcm, streamed with ``sonoseg.io.iter_frames`` versus
decoded at once with ``pydicom.dcmread(...).pixel_array``; tracemalloc peak and peak RSS over an
import-only baseline process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DICOM_FILES = [
    "US1_UNCR.dcm",
    "US1_UNCI.dcm",
    "US1_J2KR.dcm",
    "US1_J2KI.dcm",
    "OBXXXX1A.dcm",
    "OBXXXX1A_rle.dcm",
    "OBXXXX1A_expb.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "gdcm-US-ALOKA-16_big.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]
CINE = "color3d_jpeg_baseline.dcm"


def _data_store() -> Path | None:
    try:
        import data_store  # pydicom-data
    except ImportError:
        return None
    d = Path(data_store.__file__).parent / "data"
    return d if d.is_dir() else None


def _busi_images(n: int) -> list[Path]:
    env = os.environ.get("SONOSEG_DATA")
    roots = ([Path(env) / "busi"] if env else []) + [REPO.parent / "shared" / "data" / "busi"]
    for r in roots:
        if (r / "images").is_dir():
            return sorted((r / "images").glob("*.png"))[:n]
    return []


def _rss_mb() -> float:
    """Peak RSS of this process in MB. VmHWM belongs to the current address space, so it starts
    afresh after exec; ru_maxrss would inherit the (large, torch-loaded) parent's peak on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ---------------------------------------------------------------- throughput


def _sonoseg_runner():
    from sonoseg.io import load_image
    from sonoseg.preprocess import PreprocessConfig, preprocess_image

    cfg = PreprocessConfig()

    def run(path: Path):
        li = load_image(path)
        return preprocess_image(li.pixels, cfg, li.meta).image

    return run


def _monai_runner():
    import torch
    from monai.transforms import (
        Compose,
        EnsureChannelFirst,
        HistogramNormalize,
        Lambda,
        LoadImage,
        MedianSmooth,
        Resize,
        ResizeWithPadOrCrop,
        ScaleIntensity,
    )

    load = LoadImage(image_only=True)
    channel_first = EnsureChannelFirst()
    channel_last_first = EnsureChannelFirst(channel_dim=-1)
    steps = Compose(
        [
            Lambda(lambda x: x.float().mean(0, keepdim=True) if x.shape[0] > 1 else x.float()),
            ScaleIntensity(),
            MedianSmooth(radius=1),
            HistogramNormalize(num_bins=256, min=0, max=1),
            Resize(spatial_size=256, size_mode="longest"),
            ResizeWithPadOrCrop(spatial_size=(256, 256)),
        ]
    )

    def first(img):
        # MONAI's pydicom reader does not flag the RGB axis of colour DICOMs as a channel, so
        # EnsureChannelFirst would treat it as a third spatial dim: say where it is explicitly.
        rgb = img.ndim == 3 and img.shape[-1] in (3, 4)
        return channel_last_first(img) if rgb else channel_first(img)

    def run(path: Path):
        with torch.no_grad():
            return steps(first(load(str(path))))

    run.load, run.first, run.steps = load, first, steps
    return run


def _monai_breakdown(runner, path: Path, repeats: int = 3) -> dict:
    """Milliseconds per MONAI step on one file (best of ``repeats``), to show where time goes."""
    import torch

    out: dict[str, float] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = runner.load(str(path))
        timings = {"LoadImage": time.perf_counter() - t0}
        t0 = time.perf_counter()
        x = runner.first(x)
        timings["EnsureChannelFirst"] = time.perf_counter() - t0
        with torch.no_grad():
            for t in runner.steps.transforms:
                t0 = time.perf_counter()
                x = t(x)
                timings[type(t).__name__ if type(t).__name__ != "Lambda" else "grey (channel mean)"] = time.perf_counter() - t0
        for k, v in timings.items():
            out[k] = min(out.get(k, float("inf")), 1000 * v)
    return {"file": path.name, "ms": out}


def _throughput(name: str, runner, files: list[Path], rounds: int) -> dict:
    ok, errors, best = 0, [], None
    for r in range(rounds + 1):  # first pass warms caches/imports, not timed
        t0, n = time.perf_counter(), 0
        for f in files:
            try:
                out = runner(f)
                assert tuple(out.shape[-2:]) == (256, 256), out.shape
                n += 1
            except Exception as exc:  # noqa: BLE001 - a pipeline that cannot read a file is reported
                if r == 0:
                    errors.append(f"{f.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
        dt = time.perf_counter() - t0
        if r > 0 and n:
            best = dt if best is None else min(best, dt)
        ok = n
    return {
        "pipeline": name,
        "images": ok,
        "failed": len(files) - ok,
        "errors": errors,
        "seconds_best_pass": best,
        "images_per_s": (ok / best) if best else None,
        "ms_per_image": (1000 * best / ok) if best and ok else None,
    }


# ---------------------------------------------------------------- cine memory (worker processes)


def _worker(mode: str, path: str) -> dict:
    import tracemalloc

    import numpy as np
    import pydicom

    from sonoseg.io import iter_frames

    warnings.simplefilter("ignore")
    base_rss = _rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    frames, checksum = 0, 0.0
    if mode == "baseline":
        pass
    elif mode == "stream":
        for f in iter_frames(path):
            frames += 1
            checksum += float(f[::16, ::16].mean())
    elif mode == "pixel_array":
        arr = pydicom.dcmread(path).pixel_array
        frames = int(arr.shape[0])
        checksum = float(sum(arr[i, ::16, ::16].mean() for i in range(frames)))
        del arr
    else:
        raise SystemExit(f"unknown mode {mode}")
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "mode": mode,
        "frames": frames,
        "checksum": round(checksum, 3),
        "seconds": dt,
        "tracemalloc_peak_mb": peak / 1e6,
        "rss_after_imports_mb": base_rss,
        "peak_rss_mb": _rss_mb(),
        "np": np.__version__,
    }


def _run_worker(mode: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--_worker", mode, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "ingest.json", help="where to write results")
    ap.add_argument("--busi", type=int, default=50, help="number of BUSI PNGs (0 = skip)")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes per pipeline (best is reported)")
    ap.add_argument("--no-monai", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--_worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        print(json.dumps(_worker(*args._worker)))
        return 0

    warnings.simplefilter("ignore")
    import cv2
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    console = Console()
    store = _data_store()
    if store is None:
        console.print("[red]pydicom-data is not installed: no DICOM test files[/]")
        return 1
    sets = {"US/OB DICOM (pydicom-data)": [store / n for n in DICOM_FILES if (store / n).is_file()]}
    busi = _busi_images(args.busi) if args.busi > 0 else []
    if busi:
        sets[f"BUSI PNG ({len(busi)})"] = busi

    runners = {"sonoseg": _sonoseg_runner()}
    if not args.no_monai:
        runners["MONAI"] = _monai_runner()
    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": 1,
            "torch": torch.__version__,
            "opencv": cv2.__version__,
        },
        "throughput": [],
        "memory": [],
    }
    try:
        import monai
        import pydicom

        results["machine"].update(monai=monai.__version__, pydicom=pydicom.__version__)
    except ImportError:
        pass

    for set_name, files in sets.items():
        for name, runner in runners.items():
            console.print(f"[dim]timing {name} on {set_name} ...[/]")
            row = _throughput(name, runner, files, args.rounds)
            row["set"] = set_name
            results["throughput"].append(row)

    if "MONAI" in runners:
        sample = busi[0] if busi else sets["US/OB DICOM (pydicom-data)"][0]
        results["monai_step_ms"] = _monai_breakdown(runners["MONAI"], sample)

    if not args.no_memory and (store / CINE).is_file():
        base = _run_worker("baseline", store / CINE)
        for mode in ("stream", "pixel_array"):
            console.print(f"[dim]cine memory: {mode} ...[/]")
            row = _run_worker(mode, store / CINE)
            row["rss_over_baseline_mb"] = row["peak_rss_mb"] - base["peak_rss_mb"]
            results["memory"].append(row)
        results["memory_baseline"] = base
        full = 120 * 480 * 640 * 3 / 1e6
        results["cine_all_frames_uint8_mb"] = full

    table = Table(title="Ingest throughput (1 thread, best pass)", header_style="bold")
    for col in ("files", "pipeline", "images", "failed", "ms/image", "images/s"):
        table.add_column(col, justify="right" if col not in ("files", "pipeline") else "left")
    for r in results["throughput"]:
        table.add_row(
            r["set"],
            r["pipeline"],
            str(r["images"]),
            str(r["failed"]),
            f"{r['ms_per_image']:.1f}" if r["ms_per_image"] else "-",
            f"{r['images_per_s']:.1f}" if r["images_per_s"] else "-",
        )
    console.print(table)
    for r in results["throughput"]:
        for e in r["errors"]:
            console.print(f"  [yellow]{r['pipeline']} could not process[/] {e}", highlight=False)
    if results["memory"]:
        mt = Table(title=f"120-frame 480x640 RGB cine ({CINE}; all frames as uint8 = {results['cine_all_frames_uint8_mb']:.0f} MB)", header_style="bold")
        for col in ("method", "frames", "seconds", "tracemalloc peak MB", "peak RSS MB", "RSS over baseline MB"):
            mt.add_column(col, justify="right" if col != "method" else "left")
        labels = {"stream": "sonoseg iter_frames (streamed)", "pixel_array": "pydicom ds.pixel_array (all at once)"}
        for r in results["memory"]:
            mt.add_row(labels[r["mode"]], str(r["frames"]), f"{r['seconds']:.2f}", f"{r['tracemalloc_peak_mb']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['rss_over_baseline_mb']:.1f}")
        console.print(mt)
    if "monai_step_ms" in results:
        steps = results["monai_step_ms"]
        console.print(
            f"MONAI step ms on {steps['file']}: " + ", ".join(f"{k} {v:.1f}" for k, v in steps["ms"].items()),
            highlight=False,
        )
    if results["memory"]:
        console.print(f"baseline process (imports only): peak RSS {results['memory_baseline']['peak_rss_mb']:.0f} MB", highlight=False)
    console.print(
        "[dim]MONAI: no CLAHE (HistogramNormalize used), no ROI crop, palette DICOMs left as indices; "
        "sonoseg: palette -> RGB, ROI from US regions, CLAHE.[/]"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.json}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

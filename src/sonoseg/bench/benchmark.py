"""Inference benchmark: latency (median, p95), frames/s, batch throughput and peak memory per backend.

Two row types (``mode``):

* ``model``: ``Backend.run`` on a preprocessed N x C x H x W batch (the network alone);
* ``e2e``: from a decoded uint8 frame to a mask in original pixels, through the same
  :class:`sonoseg.infer.predictor.Predictor` that ``sonoseg predict`` uses: preprocess_image
  (grayscale, ROI, median, CLAHE, normalise, letterbox) + inference + sigmoid/softmax,
  ``transform.to_original`` and threshold. fps = frames per second at the median latency.

Timing: ``warmup`` untimed calls, then up to ``iters`` timed calls (``time.perf_counter``), stopping
early once ``max_seconds`` have been spent (slow comparison models), never fewer than ``min_iters``.

Peak memory (``peak_rss_mb``): the process's peak resident set size, VmHWM from /proc/self/status.
With ``isolate=True`` (CLI default) every row runs in a fresh ``python -m sonoseg.bench.benchmark``
process, so the figure is what a deployment of that one backend needs: interpreter + runtime
libraries + model + activations (an ONNX row never imports torch). ``base_rss_mb`` is the same
process's RSS just before the model was loaded, so ``peak - base`` ~ model + runtime arenas.
In-process rows (``isolate=False``, used by tests) reset VmHWM through /proc/self/clear_refs
before each row; where that is not allowed the value is ``ru_maxrss`` (monotone over the process:
an upper bound) and ``rss_method`` says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ROW_KEYS = ("model", "mode", "backend", "threads", "batch", "size", "median_ms", "p95_ms", "mean_ms", "fps",
            "peak_rss_mb", "base_rss_mb", "iters", "rss_method", "torch_imported", "status", "note")
ROW_MARKER = "SONOSEG_BENCH_ROW "


# -- memory ---------------------------------------------------------------------------------------
def _status_mb(field_name: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def rss_mb() -> Optional[float]:
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> tuple[float, str]:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "ru_maxrss"


# -- row specification -----------------------------------------------------------------------------
@dataclass
class RowSpec:
    """Everything one measurement needs; JSON-serialisable so it can cross a process boundary."""

    model: str
    backend: str
    source: str  # pickled module / checkpoint / .onnx prepared by the parent
    threads: int
    batch: int = 1
    mode: str = "model"
    size: tuple[int, int] = (256, 256)
    in_channels: int = 1
    config_json: Optional[str] = None  # SonosegConfig, needed for e2e
    frames_path: Optional[str] = None  # .npz of uint8 frames for e2e
    warmup: int = 3
    iters: int = 50
    min_iters: int = 5
    max_seconds: float = 10.0


def _timed(fn: Callable[[int], Any], warmup: int, iters: int, min_iters: int, max_seconds: float) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    times = []
    start = time.perf_counter()
    for i in range(iters):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
        if len(times) >= min_iters and time.perf_counter() - start > max_seconds:
            break
    return np.asarray(times) * 1000.0


def _empty_row(spec: RowSpec, status: str, note: str = "") -> dict:
    row = {k: None for k in ROW_KEYS}
    row.update(model=spec.model, mode=spec.mode, backend=spec.backend, threads=spec.threads, batch=spec.batch,
               size=f"{spec.size[0]}x{spec.size[1]}", status=status, note=note)
    return row


def run_row(spec: RowSpec, reset_rss: bool = True) -> dict:
    """Measure one row in this process."""
    from sonoseg.errors import SonosegError
    from sonoseg.runtime.backends import BackendUnavailable, create_backend

    method = "VmHWM" + (" (reset per row)" if reset_rss and reset_peak_rss() else "")
    base = rss_mb()
    cfg = None
    if spec.config_json:
        from sonoseg.config import SonosegConfig

        cfg = SonosegConfig.model_validate_json(spec.config_json)
    try:
        shape = (spec.batch, spec.in_channels, *spec.size)
        be = create_backend(spec.backend, spec.source, threads=spec.threads, config=cfg, compile_shape=shape)
    except BackendUnavailable as exc:
        return _empty_row(spec, "skipped", str(exc))
    except (SonosegError, RuntimeError, ValueError) as exc:
        return _empty_row(spec, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if spec.mode == "model":
        from sonoseg.runtime.onnx_export import phantom_grid

        grids = [phantom_grid(spec.size, seed=i) for i in range(spec.batch)]
        x = np.ascontiguousarray(np.repeat(np.stack(grids)[:, None], spec.in_channels, axis=1))

        def step(i: int) -> None:
            be.run(x)
    elif spec.mode == "e2e":
        from sonoseg.infer.predictor import Predictor

        if cfg is None and be.config is None:
            return _empty_row(spec, "failed", "e2e rows need the model's SonosegConfig")
        frames = list(np.load(spec.frames_path).values()) if spec.frames_path else _phantom_frames(4)
        pred = Predictor(be, cfg or be.config)

        def step(i: int) -> None:
            batch = [frames[(i * spec.batch + k) % len(frames)] for k in range(spec.batch)]
            for _ in pred.predict_stream(batch, batch_size=spec.batch):
                pass
    else:
        raise ValueError(f"unknown mode {spec.mode!r} (model, e2e)")
    ms = _timed(step, spec.warmup, spec.iters, spec.min_iters, spec.max_seconds)
    peak, how = peak_rss_mb()
    be.close()
    med = round(float(np.median(ms)), 3)
    row = _empty_row(spec, "ok")
    row.update(median_ms=med, p95_ms=round(float(np.percentile(ms, 95)), 3),
               mean_ms=round(float(ms.mean()), 3), fps=round(spec.batch * 1000.0 / med, 2),
               peak_rss_mb=round(peak, 1), base_rss_mb=None if base is None else round(base, 1), iters=int(ms.size),
               rss_method=method if how == "VmHWM" else "ru_maxrss (process-wide upper bound)",
               torch_imported="torch" in sys.modules)  # tells whether peak RSS includes libtorch
    return row


def run_row_isolated(spec: RowSpec, timeout: float = 900.0) -> dict:
    """Measure one row in a fresh interpreter (clean peak RSS, no state shared between backends)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(asdict(spec), fh)
        spec_path = fh.name
    try:
        proc = subprocess.run([sys.executable, "-m", "sonoseg.bench.benchmark", spec_path], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return _empty_row(spec, "failed", f"timed out after {timeout:.0f} s")
    finally:
        os.unlink(spec_path)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(ROW_MARKER):
            row = json.loads(line[len(ROW_MARKER):])
            if row.get("status") == "ok":
                row["rss_method"] = "VmHWM of a fresh process per row"
            return row
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return _empty_row(spec, "failed", f"row process exited {proc.returncode}: {err[:200]}")


# -- models and artefacts ----------------------------------------------------------------------------
@dataclass
class BenchModel:
    """A model to benchmark: a label, the module, and its SonosegConfig (for e2e preprocessing)."""

    label: str
    module: Any
    config: Any

    @classmethod
    def from_source(cls, source: Any, label: Optional[str] = None, config=None) -> "BenchModel":
        from sonoseg.runtime.backends import load_torch_model

        module, cfg = load_torch_model(source)
        cfg = config or cfg
        if cfg is None:
            from sonoseg.config import SonosegConfig

            cfg = SonosegConfig()
        if label is None:
            enc = f"-{cfg.model.encoder}" if cfg.model.encoder else ""
            label = f"{cfg.model.name}{enc}"
        return cls(label, module, cfg)


def registry_model(name: str, encoder: Optional[str] = None, size: tuple[int, int] = (256, 256),
                   label: Optional[str] = None, **params) -> BenchModel:
    """An untrained model from sonoseg's registry (latency does not depend on the weights)."""
    from sonoseg.config import SonosegConfig
    from sonoseg.models import create_model

    cfg = SonosegConfig.model_validate({"preprocess": {"size": list(size)},
                                        "model": {"name": name, "encoder": encoder, "params": params}})
    model = create_model(name, encoder=encoder, **params).eval()
    return BenchModel(label or (f"{name}-{encoder}" if encoder else name), model, cfg)


def comparison_models(size: tuple[int, int] = (256, 256)) -> list[BenchModel]:
    """The seed's classic U-Net (base 64) and MONAI's UNet in its common tutorial configuration."""
    from monai.networks.nets import UNet as MonaiUNet

    from sonoseg.config import SonosegConfig
    from sonoseg.models import PadToMultiple

    out = [registry_model("unet", size=size, label="unet-classic-64", base_channels=64)]
    monai = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256),
                      strides=(2, 2, 2, 2), num_res_units=2)
    cfg = SonosegConfig.model_validate({"preprocess": {"size": list(size)}, "model": {"name": "monai-unet"}})
    out.append(BenchModel("monai-unet", PadToMultiple(monai, 16).eval(), cfg))
    return out


def _phantom_frames(n: int = 4, size: tuple[int, int] = (470, 560)) -> list[np.ndarray]:
    """Decoded uint8 B-mode frames of BUSI's typical size (speckle phantoms)."""
    from sonoseg.data.phantom import make_phantom

    return [make_phantom(size, seed=i).image for i in range(n)]


def prepare_artifacts(bm: BenchModel, backends: Sequence[str], work_dir: Path,
                      calib_images: Optional[Sequence[np.ndarray]] = None,
                      frames: Optional[Sequence[np.ndarray]] = None,
                      log: Callable[[str], None] = lambda s: None) -> dict[str, str]:
    """Export the files each backend kind loads; returns backend -> source path or an 'error: ...'."""
    import torch

    from sonoseg.runtime.onnx_export import export_onnx
    from sonoseg.runtime.quantize import quantize_dynamic_int8, quantize_static_int8

    work_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    if {"torch", "torch-compile"} & set(backends):
        p = work_dir / f"{bm.label}.module.pt"
        torch.save(bm.module, p)  # whole module: also works for models outside the registry (MONAI)
        out["torch"] = out["torch-compile"] = str(p)
    if {"onnx", "onnx-int8", "onnx-int8-dynamic"} & set(backends):
        fp32 = work_dir / f"{bm.label}.onnx"
        try:
            log(f"{bm.label}: exporting ONNX")
            export_onnx(bm.module, fp32, config=bm.config)
            out["onnx"] = str(fp32)
        except Exception as exc:  # noqa: BLE001 - row shows the reason
            for k in ("onnx", "onnx-int8", "onnx-int8-dynamic"):
                out[k] = f"error: ONNX export failed ({type(exc).__name__})"
            return out
        for kind, fn in (("onnx-int8", "static"), ("onnx-int8-dynamic", "dynamic")):
            if kind not in backends:
                continue
            q = work_dir / f"{bm.label}.{kind}.onnx"
            try:
                log(f"{bm.label}: quantising ({fn})")
                if fn == "static":
                    if calib_images:
                        calib = calib_images
                    else:  # the shipped calibration frames (real ultrasound), as predict's fast path uses
                        from sonoseg.runtime.calibration import calibration_grids

                        calib = calibration_grids(bm.config)[0]
                    quantize_static_int8(fp32, q, calib)
                else:
                    quantize_dynamic_int8(fp32, q)
                out[kind] = str(q)
            except Exception as exc:  # noqa: BLE001
                out[kind] = f"error: {fn} quantisation failed ({type(exc).__name__}: {str(exc)[:120]})"
    return out


# -- the benchmark ---------------------------------------------------------------------------------------
@dataclass
class BenchmarkPlan:
    backends: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1,)  # model-mode batch sizes (throughput at batch N)
    e2e: bool = True  # add end-to-end rows (batch 1) for every backend
    warmup: int = 3
    iters: int = 50
    min_iters: int = 5
    max_seconds: float = 10.0
    isolate: bool = True
    extra: dict = field(default_factory=dict)


def run_benchmark(models: Sequence[BenchModel], plan: BenchmarkPlan = BenchmarkPlan(),
                  calib_images: Optional[Sequence[np.ndarray]] = None,
                  frames: Optional[Sequence[np.ndarray]] = None,
                  log: Callable[[str], None] = lambda s: None,
                  on_row: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Rows (dicts with :data:`ROW_KEYS`) for every model x backend x threads x batch (+ e2e)."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sonoseg-bench-") as td:
        work = Path(td)
        frames = list(frames) if frames is not None else _phantom_frames(4)
        frames_path = work / "frames.npz"
        np.savez(frames_path, *frames)
        for bm in models:
            sources = prepare_artifacts(bm, plan.backends, work / bm.label, calib_images, frames, log)
            size = tuple(bm.config.preprocess.size)
            specs = []
            for backend in plan.backends:
                for threads in plan.threads:
                    for batch in plan.batches:
                        specs.append(("model", backend, threads, batch))
                    if plan.e2e:
                        specs.append(("e2e", backend, threads, 1))
            for mode, backend, threads, batch in specs:
                spec = RowSpec(bm.label, backend, sources.get(backend, "error: not prepared"), threads, batch, mode,
                               size, bm.config.model.in_channels, bm.config.model_dump_json(), str(frames_path),
                               plan.warmup, plan.iters, plan.min_iters, plan.max_seconds)
                log(f"{bm.label}: {mode} {backend} threads={threads} batch={batch}")
                if spec.source.startswith("error:"):
                    row = _empty_row(spec, "failed", spec.source[len("error: "):])
                else:
                    row = run_row_isolated(spec) if plan.isolate else run_row(spec)
                rows.append(row)
                on_row(row)
    return rows


def rows_table(rows: Sequence[dict], title: str = "sonoseg inference benchmark"):
    """A rich Table of the rows (skipped/failed rows show their reason)."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col, just in (("model", "left"), ("mode", "left"), ("backend", "left"), ("thr", "right"),
                      ("batch", "right"), ("median ms", "right"), ("p95 ms", "right"), ("frames/s", "right"),
                      ("peak RSS MB", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        base = [str(r["model"]), str(r["mode"]), str(r["backend"]), str(r["threads"]), str(r["batch"])]
        if r.get("status") == "ok":
            t.add_row(*base, f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['fps']:.1f}",
                      f"{r['peak_rss_mb']:.0f}")
        else:
            t.add_row(*base, f"[yellow]{r.get('status')}[/]: {r.get('note', '')}", "", "", "")
    return t


def rows_markdown(rows: Sequence[dict]) -> str:
    head = "| model | mode | backend | threads | batch | median ms | p95 ms | frames/s | peak RSS MB |\n"
    head += "|---|---|---|--:|--:|--:|--:|--:|--:|\n"
    lines = []
    for r in rows:
        if r.get("status") == "ok":
            lines.append(f"| {r['model']} | {r['mode']} | {r['backend']} | {r['threads']} | {r['batch']} | "
                         f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} | {r['peak_rss_mb']:.0f} |")
        else:
            lines.append(f"| {r['model']} | {r['mode']} | {r['backend']} | {r['threads']} | {r['batch']} | "
                         f"{r.get('status')}: {r.get('note', '')} | | | |")
    return head + "\n".join(lines) + "\n"


def machine_info() -> dict:
    """What the numbers depend on: CPU model, core count, ISA extensions (AVX2, AVX-512, VNNI), the
    int8 scheme chosen for this CPU, library versions."""
    import platform

    from sonoseg.runtime.quantize import default_scheme
    from sonoseg.system import available_cpus, cpu_info

    cpu = cpu_info()
    info: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "available_cpus": available_cpus(), "cpu": cpu.model, "cpu_label": cpu.label(),
                            "avx2": cpu.avx2, "avx512": cpu.avx512, "vnni": cpu.vnni,
                            "isa": sorted(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                                          if f in cpu.flags),
                            "int8_scheme": default_scheme(cpu)}
    for mod in ("torch", "onnxruntime", "onnx"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:
        info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def _main(argv: Sequence[str]) -> int:
    """Child entry point: ``python -m sonoseg.bench.benchmark SPEC.json`` prints one marked JSON row."""
    import warnings

    warnings.simplefilter("ignore")
    data = json.loads(Path(argv[0]).read_text())
    data["size"] = tuple(data["size"])
    row = run_row(RowSpec(**data), reset_rss=False)
    sys.stdout.write(ROW_MARKER + json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through run_row_isolated
    raise SystemExit(_main(sys.argv[1:]))

"""PyTorch -> TorchScript (for C++/LibTorch deployments), config travelling in ``_extra_files``.

``torch.jit.trace`` is tried first: smp encoders use Python constructs that ``torch.jit.script``
rejects, while tracing records PadToMultiple's shape arithmetic as graph ops so other input sizes
still work. Each result is checked against eager PyTorch at the nominal size and at another size;
if the trace does not generalise, ``script`` is tried; if neither does, the trace is kept and
``dynamic_spatial=False`` says the file only takes the nominal size.
"""

from __future__ import annotations

import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from sonoseg.runtime.onnx_export import (
    ExportError,
    VerifiedExport,
    _input_spec,
    compare_with_eager,
    torch_outputs,
    verification_inputs,
)

CONFIG_FILE = "sonoseg_config.json"
SUFFIXES = (".ts", ".torchscript")


@dataclass
class TorchScriptExportResult(VerifiedExport):
    path: Path
    method: str  # "trace" | "script"
    dynamic_spatial: bool
    input_size: tuple[int, int]


def _check(model, scripted, size, in_channels, normalize, atol):
    """TorchScript module vs eager: returns (diffs, tolerance, spatial_ok)."""
    return compare_with_eager(model, lambda x: torch_outputs(scripted, x),
                              verification_inputs(size, in_channels, normalize), size, in_channels, atol)


def export_torchscript(
    model,
    path: str | Path,
    *,
    config=None,
    input_size: Optional[tuple[int, int]] = None,
    in_channels: Optional[int] = None,
    method: str = "auto",
    atol: float = 1e-4,
) -> TorchScriptExportResult:
    """Save ``model`` as TorchScript at ``path`` (``.ts``) with the config as an extra file."""
    import torch

    if method not in ("auto", "trace", "script"):
        raise ExportError(f"unknown TorchScript method {method!r} (auto, trace, script)")
    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    size, in_channels, normalize = _input_spec(model, config, input_size, in_channels)
    example = torch.from_numpy(verification_inputs(size, in_channels, normalize)["phantom"])
    order = ["trace", "script"] if method == "auto" else [method]
    candidates: list[tuple[str, object, dict, float, bool]] = []
    notes: list[str] = []
    for name in order:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                sm = torch.jit.trace(model, example, check_trace=False) if name == "trace" else torch.jit.script(model)
            diffs, tol, spatial_ok = _check(model, sm, size, in_channels, normalize, atol)
        except Exception as exc:  # noqa: BLE001 - try the next method
            notes.append(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        nominal = max(v for k, v in diffs.items() if not k.startswith("size_"))
        if nominal > tol:
            notes.append(f"{name}: max abs diff {nominal:.2e} > tolerance {tol:.2e}")
            continue
        candidates.append((name, sm, diffs, tol, spatial_ok))
        if spatial_ok:
            break
        notes.append(f"{name}: other input sizes do not reproduce eager PyTorch")
    if not candidates:
        raise ExportError(f"{path}: TorchScript export failed ({'; '.join(notes)})")
    name, sm, diffs, tol, spatial_ok = max(candidates, key=lambda c: c[4])  # prefer one that generalises
    extra = {CONFIG_FILE: config.model_dump_json() if config is not None else "null"}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(sm, str(tmp), _extra_files=extra)
    tmp.replace(path)
    return TorchScriptExportResult(path, name, spatial_ok, size, max_abs_diff=diffs, tolerance=tol,
                                   seconds=time.perf_counter() - t0, notes=notes)


def is_torchscript_file(path: str | Path) -> bool:
    """TorchScript archives are zips holding ``<name>/code/`` and ``<name>/constants.pkl``."""
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: str | Path):
    """``(ScriptModule.eval(), SonosegConfig | None)``."""
    import torch

    from sonoseg.config import SonosegConfig
    from sonoseg.errors import InputError

    extra = {CONFIG_FILE: ""}
    try:
        sm = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - any load error means 'not a TorchScript model'
        raise InputError(path, f"not a readable TorchScript file ({type(exc).__name__})") from exc
    raw = extra.get(CONFIG_FILE) or b""
    raw = raw.decode() if isinstance(raw, (bytes, bytearray)) else raw
    cfg = SonosegConfig.model_validate_json(raw) if raw and raw != "null" else None
    return sm.eval(), cfg


__all__ = ["export_torchscript", "load_torchscript", "is_torchscript_file", "TorchScriptExportResult"]

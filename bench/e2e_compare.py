#!/usr/bin/env python
"""Compare the end-to-end speed of several models on a noisy host: interleaved runs, medians.

On a shared machine one run of ``bench/e2e_breakdown.py`` can move by 10-25% from the next, so a
comparison of two models from one run each says little. This runs e2e_breakdown for each model in turn,
each run in a fresh process, ``--repeat`` times (A, B, A, B, ...), so slow minutes hit every model alike,
and reports every run and the median per model. ``--append`` adds this invocation's runs to those
already in ``--out`` (same backend and threads), so a claim can rest on runs spread over hours.

    .venv/bin/python bench/e2e_compare.py v3=src/sonoseg/assets/models/busi_default.pt v31=runs/v31.pt \\
        --repeat 7 --backend onnx-int8 --threads 2
    .venv/bin/python bench/e2e_compare.py v3=src/sonoseg/assets/models/busi_default.pt --repeat 5 --append  # later

Writes bench/results/e2e_compare.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(model: str, backend: str, threads: int, rounds: int, dataset: Path | None,
            env: dict[str, str] | None = None) -> dict:
    """One fresh ``e2e_breakdown.py`` process (``env``: variables added to this one's); its JSON result."""
    import os

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(HERE / "e2e_breakdown.py"), "--model", model, "--backend", backend,
               "--threads", str(threads), "--rounds", str(rounds), "--out", tmp]
        if dataset is not None:
            cmd += ["--dataset", str(dataset)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"error: {model}: e2e_breakdown failed: {tail}")
        return json.loads((Path(tmp) / "e2e_breakdown.json").read_text())


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """The options of a series of interleaved runs (shared with bench/ort_spinning.py)."""
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--backend", default="onnx-int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the frames per run")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--out", type=Path, default=HERE / "results")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=PATH (checkpoint or .onnx), one or more")
    add_run_args(ap)
    ap.add_argument("--append", action="store_true", help="add to the runs already in --out (same backend, threads)")
    args = ap.parse_args(argv)
    pairs = []
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"{spec}: expected NAME=PATH to an existing model file")
        pairs.append((name, path))

    runs: dict[str, list[dict]] = {name: [] for name, _ in pairs}
    machine = None
    old_path = args.out / "e2e_compare.json"
    if args.append and old_path.is_file():
        old = json.loads(old_path.read_text())
        if (old.get("backend"), old.get("threads")) != (args.backend, args.threads):
            ap.error(f"{old_path}: holds {old.get('backend')} at {old.get('threads')} thread(s), not "
                     f"{args.backend} at {args.threads}; use another --out")
        for name, rs in old.get("runs", {}).items():
            if name in runs and old["models"].get(name) != dict(pairs)[name]:
                ap.error(f"{old_path}: {name} was {old['models'][name]}, not {dict(pairs)[name]}")
            runs.setdefault(name, []).extend(rs)
        pairs = list({**old.get("models", {}), **dict(pairs)}.items())
        machine = old.get("machine")
    new = [(n, p) for n, p in pairs if any(spec.partition("=")[0] == n for spec in args.models)]
    for i in range(args.repeat):
        for name, path in new:
            res = one_run(path, args.backend, args.threads, args.rounds, args.dataset)
            machine = machine or res["machine"]
            runs[name].append({"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                               "e2e_fps": res["e2e_fps"], "e2e_ms": res["e2e_ms"],
                               "network_ms": res["stages_ms"].get("network (backend.run_all)"),
                               "backend": res["backend"], "load_1min": res["machine"].get("loadavg_1min")})
            print(f"run {i + 1}/{args.repeat} {name}: {res['e2e_fps']:.0f} frames/s end to end", file=sys.stderr)

    lines = [f"Machine: {machine.get('cpu_label', machine.get('cpu'))}; backend {args.backend}, {args.threads} "
             f"thread(s); interleaved runs, each a fresh process"
             + (f"; runs from {min(r['utc'] for rs in runs.values() for r in rs if 'utc' in r)} to "
                f"{max(r['utc'] for rs in runs.values() for r in rs if 'utc' in r)} UTC" if args.append else ""), "",
             "| model | backend used | end-to-end frames/s, every run | runs | median | min | network ms, median |",
             "|---|---|---|--:|--:|--:|--:|"]
    summary = {}
    for name, rs in runs.items():
        fps = [r["e2e_fps"] for r in rs]
        net = [r["network_ms"] for r in rs if r["network_ms"] is not None]
        summary[name] = {"runs": len(fps), "median_fps": statistics.median(fps), "min_fps": min(fps),
                         "median_network_ms": statistics.median(net) if net else None}
        lines.append(f"| {name} | {rs[0]['backend']} | {', '.join(f'{f:.0f}' for f in fps)} | {len(fps)} | "
                     f"{summary[name]['median_fps']:.0f} | {min(fps):.0f} | "
                     f"{'-' if not net else f'{statistics.median(net):.1f}'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e_compare.json").write_text(json.dumps(
        {"machine": machine, "backend": args.backend, "threads": args.threads, "models": dict(pairs),
         "runs": runs, "summary": summary}, indent=2))
    (args.out / "e2e_compare.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

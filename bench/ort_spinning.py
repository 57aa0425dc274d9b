#!/usr/bin/env python
"""Does onnxruntime's thread spinning cost end-to-end frames/s? Interleaved runs, spinning off and on.

onnxruntime's intra-op pool threads spin (busy-wait) for a while after each run by default. On a two-core
cart the network uses both cores, and the spinning threads then compete with the next frame's CLAHE and
resize. sonoseg builds its sessions with spinning off; ``SONOSEG_ORT_SPINNING=1`` turns it back on. This
runs ``e2e_breakdown.py`` on one model in fresh processes, off and on in turn (``--repeat`` pairs, so slow
minutes hit both alike), and reports every run and the medians. Time it on an otherwise idle machine.

    .venv/bin/python bench/ort_spinning.py                       # the shipped fast tier, int8, 2 threads
    .venv/bin/python bench/ort_spinning.py --model my.pt --repeat 9

Writes bench/results/ort_spinning.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e_compare import add_run_args, one_run  # noqa: E402  (a sibling bench script)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint or .onnx (default: the shipped fast tier)")
    add_run_args(ap)
    a = ap.parse_args(argv)
    from sonoseg.models.shipped import resolve_model

    model = str(resolve_model(a.model, "predict"))
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    machine = None
    for i in range(a.repeat):
        for label in runs:
            res = one_run(model, a.backend, a.threads, a.rounds, a.dataset,
                          env={"SONOSEG_ORT_SPINNING": "1" if label == "on" else "0"})
            machine = machine or res["machine"]
            runs[label].append({"e2e_fps": res["e2e_fps"], "network_ms": res["stages_ms"]["network (backend.run_all)"],
                                "load_1min": res["machine"].get("loadavg_1min")})
            print(f"run {i + 1}/{a.repeat} spinning {label}: {res['e2e_fps']:.0f} frames/s", file=sys.stderr)
    summary = {k: {"median_fps": statistics.median(r["e2e_fps"] for r in rs),
                   "min_fps": min(r["e2e_fps"] for r in rs),
                   "median_network_ms": statistics.median(r["network_ms"] for r in rs)} for k, rs in runs.items()}
    pairs_won = sum(off["e2e_fps"] > on["e2e_fps"] for off, on in zip(runs["off"], runs["on"]))
    lines = [f"Machine: {machine.get('cpu_label', machine.get('cpu'))}; {Path(model).name}, backend {a.backend}, "
             f"{a.threads} thread(s); interleaved fresh processes", "",
             "| onnxruntime spinning | end-to-end frames/s, every run | median | min | network ms, median |",
             "|---|---|--:|--:|--:|"]
    for k, rs in runs.items():
        every = ", ".join(f"{r['e2e_fps']:.0f}" for r in rs)
        lines.append(f"| {k}{' (sonoseg)' if k == 'off' else ' (onnxruntime default)'} | {every} | "
                     f"{summary[k]['median_fps']:.0f} | "
                     f"{summary[k]['min_fps']:.0f} | {summary[k]['median_network_ms']:.1f} |")
    lines += ["", f"Spinning off was faster in {pairs_won} of {a.repeat} interleaved pairs."]
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ort_spinning.json").write_text(json.dumps(
        {"machine": machine, "model": Path(model).name, "backend": a.backend, "threads": a.threads, "runs": runs,
         "summary": summary, "off_faster_pairs": pairs_won}, indent=2))
    (a.out / "ort_spinning.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

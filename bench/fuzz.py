#!/usr/bin/env python
"""Fuzz benchmark: `predict` over a seeded corpus of broken variants of real vendor files.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py                 # table on stdout, JSON in bench/results/fuzz.json
    .venv/bin/python bench/fuzz.py --seed 1 --flips 12 --timeout 60 --json /tmp/fuzz.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/fuzz.py --service       # pixel bombs through `sonoseg serve`
                                                                     # (bench/fuzz_service.py; JSON in bench/results/fuzz_service.json)

The corpus comes from tests/fuzz_corpus.py (built in a temporary folder at run time from pydicom /
pydicom-data files, never committed). One worker process loads the model once and runs
``predict_inputs`` on one variant at a time (DICOM SEG on, as `sonoseg predict` does); the parent
enforces a per-variant timeout (a hang kills and restarts the worker) and reads each result back.

Counted per variant:
  * reason     - failed with a one-line reason in words;
  * ok/flagged - succeeded (flagged: with a warning such as "calibration dropped");
  * silent_ok  - a variant that is inconsistent by construction came back OK without a warning;
  * traceback  - an exception escaped predict_inputs (or the worker died);
  * raw_name   - a reason that is a bare exception class name ("KeyError: ...") instead of words;
  * timeout    - no answer within --timeout seconds.
Peak memory is the worker's peak RSS (getrusage of the waited-for children), model included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
RAW_NAME = re.compile(r"(^|[\s(:])(?:[A-Z][A-Za-z]+(?:Error|Exception)|Traceback)\b")


def _cpu() -> str:
    from sonoseg.system import available_cpus, cpu_info

    return f"{cpu_info().label()}, {available_cpus()} cores"


def _worker(conn, model: str | None, out_root: str, threads: int) -> None:
    import traceback
    import warnings

    warnings.simplefilter("ignore")
    from sonoseg.infer.predictor import Predictor
    from sonoseg.infer.run import predict_inputs

    predictor = Predictor.from_path(model, threads=threads, log=lambda m: None)  # loaded once, like one batch

    while True:
        msg = conn.recv()
        if msg is None:
            break
        i, path = msg
        out = Path(out_root) / f"o{i}"
        try:
            payload = predict_inputs([path], out, model=predictor, log=lambda m: None, show_progress=False)
            rec = payload["results"][0]
            reply = {"result": {k: rec.get(k) for k in ("status", "ok", "error", "warnings", "output_errors")}}
        except BaseException as exc:  # noqa: BLE001 - what we count
            reply = {"traceback": f"{type(exc).__name__}: {exc}"[:300], "tb": traceback.format_exc()[-1500:]}
        reply["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(reply)


class Pool1:
    """One worker with restart-on-timeout."""

    def __init__(self, model, out_root, threads):
        self.args = (model, out_root, threads)
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self):
        self.parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.proc.start()

    def run(self, i, path, timeout):
        self.parent.send((i, path))
        if self.parent.poll(timeout):
            try:
                return self.parent.recv()
            except EOFError:
                pass
        else:
            self.proc.kill()
            self.proc.join()
            self._start()
            return {"timeout": True}
        self.proc.join()
        self._start()
        return {"traceback": f"worker died (exit code {self.proc.exitcode})"}

    def close(self):
        try:
            self.parent.send(None)
        except OSError:
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flips", type=int, default=8, help="byte-flip variants per seed file")
    ap.add_argument("--truncations", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per variant before it counts as a hang")
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="only the first N variants (0 = all)")
    ap.add_argument("--json", default=None, help="default: bench/results/fuzz.json (fuzz_service.json with --service)")
    ap.add_argument("--service", action="store_true", help="upload-path bombs through a running `sonoseg serve`")
    ap.add_argument("--job-memory-mb", type=float, default=None, help="--service: the server's SONOSEG_JOB_MEMORY_MB")
    ap.add_argument("--max-seconds", type=float, default=900, help="--service: wait at most this long for the jobs")
    args = ap.parse_args()
    if args.service:
        sys.path.insert(0, str(REPO / "bench"))
        from fuzz_service import print_summary, run_service

        print_summary(run_service(args), _cpu(), Path(args.json or REPO / "bench" / "results" / "fuzz_service.json"))
        return
    args.json = args.json or str(REPO / "bench" / "results" / "fuzz.json")

    import warnings

    warnings.simplefilter("ignore")
    from fuzz_corpus import build_corpus, verdict

    t0 = time.time()
    corpus = build_corpus(seed=args.seed, flips=args.flips, truncations=args.truncations)
    if args.limit:
        corpus = corpus[: args.limit]
    build_s = time.time() - t0
    counts, rows, slowest = Counter(), [], []
    with tempfile.TemporaryDirectory(prefix="sonoseg-fuzz-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        pool = Pool1(args.model, str(Path(tmp) / "out"), args.threads)
        t1 = time.time()
        peak = 0.0
        try:
            for i, v in enumerate(corpus):
                p = v.write(folder)
                ts = time.time()
                rep = pool.run(i, str(p), args.timeout)
                secs = time.time() - ts
                peak = max(peak, rep.get("rss_mb", 0.0))
                if rep.get("timeout"):
                    kind = "timeout"
                elif "traceback" in rep:
                    kind = "traceback"
                else:
                    kind = verdict(v, rep["result"])
                    err = rep["result"].get("error") or ""
                    if RAW_NAME.search(err) or any(RAW_NAME.search(e or "") for e in (rep["result"].get("output_errors") or {}).values()):
                        counts["raw_name"] += 1
                counts[kind] += 1
                rows.append({"variant": v.name, "expect": v.expect, "verdict": kind, "seconds": round(secs, 3),
                             "error": (rep.get("result") or {}).get("error") or rep.get("traceback"),
                             "warnings": (rep.get("result") or {}).get("warnings")})
                slowest.append((secs, v.name))
                p.unlink()
        finally:
            pool.close()
        run_s = time.time() - t1
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak = max(peak, child_peak)
    slowest.sort(reverse=True)
    summary = {
        "variants": len(corpus),
        "reasons_given": counts["reason"],
        "ok": counts["ok"],
        "flagged_ok": counts["flagged"],
        "silent_ok": counts["silent_ok"],
        "tracebacks": counts["traceback"],
        "raw_exception_names": counts["raw_name"],
        "timeouts": counts["timeout"],
        "peak_rss_mb": round(peak, 1),
        "corpus_build_s": round(build_s, 1),
        "run_s": round(run_s, 1),
        "slowest": [{"variant": n, "seconds": round(s, 2)} for s, n in slowest[:5]],
    }
    env = {"cpu": _cpu(), "python": platform.python_version(), "platform": platform.platform(),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "threads": args.threads,
           "model": args.model or "shipped default", "seed": args.seed, "timeout_s": args.timeout}
    print(f"sonoseg fuzz: {len(corpus)} variants, seed {args.seed}, model {env['model']}, {env['cpu']}")
    print(f"{'count':<28}{'value':>10}")
    print("-" * 38)
    for k in ("variants", "reasons_given", "ok", "flagged_ok", "silent_ok", "tracebacks", "raw_exception_names",
              "timeouts", "peak_rss_mb", "corpus_build_s", "run_s"):
        print(f"{k:<28}{summary[k]:>10}")
    bad = [r for r in rows if r["verdict"] in ("silent_ok", "traceback", "timeout")]
    for r in bad[:20]:
        print(f"  {r['verdict']:<10} {r['variant']}: {r['error']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"summary": summary, "environment": env, "variants": rows}, indent=1))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()

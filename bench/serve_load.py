#!/usr/bin/env python
"""Load benchmark of ``sonoseg serve``: parallel loopback clients upload the shipped samples and read
results, against SQLite and (when the binaries exist) a throw-away PostgreSQL server.

    .venv/bin/python bench/serve_load.py                    # table on stdout, JSON in bench/results/serve_load.json
    .venv/bin/python bench/serve_load.py --clients 8 --uploads 4 --reads 200 --backends sqlite

Per backend, the server runs as its own process (``sonoseg serve``, worker included, 1 torch thread),
so its peak RSS (VmHWM) is the server's alone. Figures:
  * uploads/s   - accepted uploads (202) per second of wall time, all clients in parallel
  * jobs/s      - uploads predicted and stored per second (first upload -> last job done)
  * read median / p95 ms - GET /results/{id} and its overlay PNG, all clients in parallel, after the
    jobs have ended
  * peak RSS MB - the server process
Bounded: --clients, --uploads, --reads and --max-seconds per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test helpers start/stop PostgreSQL the same way the tests do
sys.path.insert(0, str(REPO / "src"))


def _cpu() -> str:
    from sonoseg.system import available_cpus, cpu_info

    return f"{cpu_info().label()}, {available_cpus()} cores"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait(pred, timeout: float, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False


def run_backend(name: str, url_db, args) -> dict:
    import httpx

    from _pg import free_port
    from _serve import PASSWORDS, make_store, samples, stop_process

    data = Path(tempfile.mkdtemp(prefix=f"sonoseg-bench-{name}-")) / "data"
    make_store(data, url_db).dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "sonoseg", "serve", "--port", str(port), "--data", str(data)]
    if url_db:
        cmd += ["--db", url_db]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    out = {"backend": name}
    try:
        def healthy():
            try:
                return httpx.get(f"{base}/health", timeout=10).status_code == 200
            except httpx.HTTPError:
                return False

        if not _wait(healthy, 120):
            raise RuntimeError(f"{name}: server did not start")
        tok = httpx.post(f"{base}/api/v1/auth/token", data={"username": "operator", "password": PASSWORDS["operator"]},
                         timeout=60).json()
        h = {"Authorization": f"Bearer {tok['access_token']}"}
        files = samples()
        # warm the model (first job loads it) so uploads/s and jobs/s measure the steady state
        r = httpx.post(f"{base}/api/v1/jobs", files={"files": (files[0].name, files[0].read_bytes())}, headers=h, timeout=60)
        warm = r.json()["jobs"][0]["id"]
        _wait(lambda: httpx.get(f"{base}/api/v1/jobs/{warm}", headers=h, timeout=60).json()["status"] in ("done", "failed"),
              300)

        def uploader(i):
            ids, lat = [], []
            with httpx.Client(base_url=base, headers=h, timeout=120) as c:
                for k in range(args.uploads):
                    p = files[(i + k) % len(files)]
                    t = time.perf_counter()
                    r = c.post("/api/v1/jobs", files={"files": (p.name, p.read_bytes())})
                    lat.append(time.perf_counter() - t)
                    if r.status_code == 202:
                        ids += [j["id"] for j in r.json()["jobs"]]
            return ids, lat

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            ups = list(pool.map(uploader, range(args.clients)))
        t_up = time.perf_counter() - t0
        ids = [j for u, _ in ups for j in u]
        out["uploads"] = len(ids)
        out["uploads_per_s"] = len(ids) / t_up
        out["upload_median_ms"] = 1000 * statistics.median([x for _, lat in ups for x in lat])

        def ended():
            r = httpx.get(f"{base}/api/v1/jobs", params={"limit": 500}, headers=h, timeout=60).json()
            return sum(j["status"] in ("done", "failed") for j in r["items"] if j["id"] in set(ids)) == len(ids)

        finished = _wait(ended, args.max_seconds, 0.25)
        t_jobs = time.perf_counter() - t0
        out["jobs_per_s"] = len(ids) / t_jobs if finished else float("nan")
        res = httpx.get(f"{base}/api/v1/results", params={"limit": 500}, headers=h, timeout=60).json()["items"]
        out["results"] = len(res)
        rids = [r["id"] for r in res] or [0]

        def reader(i):
            lat = []
            deadline = time.monotonic() + args.max_seconds
            with httpx.Client(base_url=base, headers=h, timeout=60) as c:
                for k in range(args.reads):
                    if time.monotonic() > deadline:
                        break
                    rid = rids[(i + k) % len(rids)]
                    path = f"/api/v1/results/{rid}" if k % 2 == 0 else f"/api/v1/results/{rid}/overlay"
                    t = time.perf_counter()
                    c.get(path).raise_for_status()
                    lat.append(time.perf_counter() - t)
            return lat

        with ThreadPoolExecutor(args.clients) as pool:
            lats = sorted(x for lat in pool.map(reader, range(args.clients)) for x in lat)
        out["reads"] = len(lats)
        out["read_median_ms"] = 1000 * statistics.median(lats)
        out["read_p95_ms"] = 1000 * lats[int(0.95 * (len(lats) - 1))]
        out["peak_rss_mb"] = _peak_rss_mb(proc.pid)
    finally:
        stop_process(proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--uploads", type=int, default=3, help="uploads per client")
    ap.add_argument("--reads", type=int, default=100, help="reads per client")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "serve_load.json")
    args = ap.parse_args()

    rows = []
    for b in args.backends.split(","):
        if b == "sqlite":
            rows.append(run_backend("sqlite", None, args))
        elif b == "postgresql":
            from _pg import PgServer, pg_bindir

            if pg_bindir() is None:
                print("postgresql: binaries not installed, skipped")
                continue
            pg = PgServer().start()
            try:
                rows.append(run_backend("postgresql", pg.new_database(), args))
            finally:
                pg.stop()
    cols = [("backend", "backend", "{}"), ("uploads", "uploads", "{}"), ("uploads/s", "uploads_per_s", "{:.1f}"),
            ("jobs/s", "jobs_per_s", "{:.2f}"), ("read median ms", "read_median_ms", "{:.1f}"),
            ("read p95 ms", "read_p95_ms", "{:.1f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}")]
    print(f"sonoseg serve load: {args.clients} clients x {args.uploads} uploads, {args.reads} reads each; CPU {_cpu()}")
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("| " + " | ".join("---" for _ in cols) + " |")
    for r in rows:
        print("| " + " | ".join(f.format(r.get(k, float("nan"))) for _, k, f in cols) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu": _cpu(), "clients": args.clients, "uploads_per_client": args.uploads,
                                     "reads_per_client": args.reads, "rows": rows}, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()

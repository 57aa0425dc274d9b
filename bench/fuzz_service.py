"""Upload-path bombs through a running ``sonoseg serve`` (``bench/fuzz.py --service``).

The server runs as its own process (worker included, 1 torch thread) on a fresh SQLite store. Every
bomb of tests/upload_bombs.py (PNG, JPEG, DICOM, NIfTI; headers that lie and streams that inflate) is
uploaded; then the same bombs are queued straight into the store, as ``pacs --store`` would, so the
worker's own check is exercised too; then a real sample must still go through. Counted:
  * refused    - upload answered 4xx with a one-line reason;
  * crash      - a 5xx, a dropped connection or the server process gone;
  * accepted   - a bomb the upload check let through (its job must then fail with a reason);
  * worker_refused / worker_done - queued bombs the worker failed with a reason / processed.
Peak RSS is the server's VmHWM (its high-water mark over the whole run), sampled every 0.2 s too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mem(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cached_bombs(build) -> list:
    """Building the bombs costs ~20 s of CPU (zlib over gigabytes of zeros): kept in the temp folder
    between runs, keyed by the builder's source."""
    import hashlib
    import pickle

    import upload_bombs

    key = hashlib.sha256(Path(upload_bombs.__file__).read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"sonoseg-upload-bombs-{key}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    bombs = build()
    cache.write_bytes(pickle.dumps(bombs))
    return bombs


def run_service(args) -> dict:
    import httpx

    sys.path.insert(0, str(REPO / "tests"))
    from _pg import free_port
    from _serve import PASSWORDS, make_store, samples, stop_process
    from upload_bombs import all_bombs
    from sonoseg.serve.uploads import Spooled
    from sonoseg.store import jobs

    t0 = time.time()
    bombs = _cached_bombs(all_bombs)
    build_s = time.time() - t0
    data = Path(tempfile.mkdtemp(prefix="sonoseg-fuzz-service-")) / "data"
    make_store(data).dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    if args.job_memory_mb:
        env["SONOSEG_JOB_MEMORY_MB"] = str(args.job_memory_mb)
    log = open(data.parent / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "sonoseg", "serve", "--port", str(port), "--data", str(data)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    rss_trace, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            rss_trace.append(_mem(proc.pid, "VmRSS"))
            stop.wait(0.2)

    threading.Thread(target=sample, daemon=True).start()
    rows, out = [], {"bombs": len(bombs), "bomb_build_s": round(build_s, 1)}
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        tok = httpx.post(f"{base}/api/v1/auth/token", data={"username": "operator", "password": PASSWORDS["operator"]},
                         timeout=60).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        client = httpx.Client(base_url=base, headers=h, timeout=args.timeout)
        accepted = []
        def post(b):
            r = client.post("/api/v1/jobs", files={"files": (f"{b.name}{b.suffix}", b.data)})
            return r, r.status_code, (r.json().get("detail") if r.headers.get("content-type", "").startswith(
                "application/json") else r.text[:200])

        for b in bombs:
            t = time.perf_counter()
            retried = False
            try:
                r, code, detail = post(b)
            except httpx.HTTPError as exc:
                # a pooled keep-alive connection the server closed while this (niced, slow) client was busy
                # reads as an error: try once more on a fresh connection; a server that dropped it again,
                # or died, is a crash
                code, detail, retried = 0, f"connection: {type(exc).__name__}", True
                if proc.poll() is None:
                    client.close()
                    client = httpx.Client(base_url=base, headers=h, timeout=args.timeout)
                    try:
                        r, code, detail = post(b)
                    except httpx.HTTPError as exc2:
                        detail = f"connection (twice): {type(exc2).__name__}"
            verdict = "crash" if code == 0 or code >= 500 or proc.poll() is not None else \
                "accepted" if code == 202 else "refused"
            if code == 202:
                accepted += [j["id"] for j in r.json()["jobs"]]
            rows.append({"bomb": b.name, "size_kb": round(len(b.data) / 1024, 1), "path": "upload", "status": code,
                         "verdict": verdict, "retried": retried, "detail": detail, "seconds": round(time.perf_counter() - t, 2),
                         "server_rss_mb": round(_mem(proc.pid, "VmRSS"))})
            print(f"  upload {b.name:<32} {code} {verdict:<8} {str(detail)[:110]}", flush=True)
        # the worker's own check: the same bombs queued without the upload check (as `pacs --store` does)
        from sonoseg.store import Store

        st = Store(data)
        queued = {}
        for b in bombs:
            tmp = st.work / f"q{b.suffix}"
            tmp.write_bytes(b.data)
            fmt = {".png": "image", ".jpg": "image", ".dcm": "dicom", ".nii.gz": "nifti"}[b.suffix]
            queued[jobs.enqueue(st, [Spooled(tmp, fmt, "0" * 64, len(b.data))], "fuzz")[0]] = b.name
        st.dispose()
        sample_file = samples()[0]
        r = client.post("/api/v1/jobs", files={"files": (sample_file.name, sample_file.read_bytes())})
        real = r.json()["jobs"][0]["id"] if r.status_code == 202 else None

        def status(jid):
            try:
                return client.get(f"/api/v1/jobs/{jid}").json()
            except httpx.HTTPError:
                return {"status": "unreachable"}

        end = time.monotonic() + args.max_seconds
        pending = list(queued) + accepted + ([real] if real else [])
        while pending and time.monotonic() < end and proc.poll() is None:
            pending = [j for j in pending if status(j)["status"] in ("queued", "running")]
            time.sleep(0.5)
        for jid, name in queued.items():
            j = status(jid)
            verdict = "worker_refused" if j["status"] == "failed" and j.get("error") else \
                "worker_done" if j["status"] == "done" else "crash"
            rows.append({"bomb": name, "path": "queue", "status": j["status"], "verdict": verdict,
                         "detail": j.get("error"), "server_rss_mb": round(_mem(proc.pid, "VmRSS"))})
            print(f"  queue  {name:<32} {j['status']:<8} {str(j.get('error'))[:110]}", flush=True)
        out["real_sample_after"] = status(real)["status"] if real else f"upload {r.status_code}"
        out["health_after"] = httpx.get(f"{base}/health", timeout=10).status_code if proc.poll() is None else "dead"
        out["server_peak_rss_mb"] = round(_mem(proc.pid, "VmHWM"))
    finally:
        stop.set()
        stop_process(proc)
        log.close()
    count = lambda v: sum(r["verdict"] == v for r in rows)  # noqa: E731
    out.update({"refused": count("refused"), "accepted": count("accepted"), "crashes": count("crash"),
                "worker_refused": count("worker_refused"), "worker_done": count("worker_done"),
                "server_peak_rss_sampled_mb": round(max(rss_trace or [0.0])), "run_s": round(time.time() - t0, 1)})
    return {"summary": out, "rows": rows}


def print_summary(rep: dict, cpu: str, path: Path) -> None:
    s = rep["summary"]
    print(f"sonoseg fuzz --service: {s['bombs']} bombs through `sonoseg serve` (upload, then queued), {cpu}")
    for k in ("refused", "accepted", "crashes", "worker_refused", "worker_done", "real_sample_after", "health_after",
              "server_peak_rss_mb", "server_peak_rss_sampled_mb", "bomb_build_s", "run_s"):
        print(f"{k:<28}{s[k]!s:>12}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rep, indent=1))
    print(f"JSON: {path}")

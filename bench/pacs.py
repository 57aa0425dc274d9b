#!/usr/bin/env python
"""Throughput of ``sonoseg listen``, end to end: C-STORE into the listener -> segmented with the shipped
model -> SEG C-STOREd back into a real Orthanc (the same throw-away server the tests use).

    .venv/bin/python bench/pacs.py                          # 2 threads, 24 instances in 4 studies
    .venv/bin/python bench/pacs.py --threads 1 --instances 6 --studies 2
    .venv/bin/python bench/pacs.py --repeat 3                # the same studies sent three times

Instances are real vendor ultrasound files (pydicom-data: OBXXXX1A 600x800 palette, US1_J2KR 480x640
RGB JPEG 2000) with fresh study / series / instance UIDs, sent by a DIMSE client as one association per
study. The domain check is off (these obstetric images are out of the breast model's scope, and an
out-of-scope image gets no SEG), so every instance takes the full path. Figures:
  * receive inst/s   - C-STORE of all instances into the listener (sender's wall time)
  * e2e inst/s       - instances / (first C-STORE -> last SEG stored in Orthanc); includes one quiet
                       period (--quiet-period) per study, during which the next study is already segmented
  * segment inst/s   - instances / time the listener's worker spent segmenting and sending
  * SEG latency s    - last instance of a study received -> its SEG stored (median over studies)
  * with --repeat N: the same studies are sent N times in all; SEGs in Orthanc counts what the PACS
    holds at the end (one per image expected: re-deliveries are recognised, nothing is sent again) and
    resend s the time the listener took to receive and pass over the N-1 re-deliveries
The model loads once before the clock starts. Bounded by --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the Orthanc helper of the tests
sys.path.insert(0, str(REPO / "src"))

FILES = ("OBXXXX1A.dcm", "US1_J2KR.dcm")


def _cpu() -> str:
    from sonoseg.system import available_cpus, cpu_info

    return f"{cpu_info().label()}, {available_cpus()} cores"


def _inputs(work: Path, instances: int, studies: int) -> list[list[Path]]:
    """``instances`` files spread over ``studies`` studies, each with new UIDs (one series per study)."""
    import pydicom
    from conftest import dicom_testfile
    from pydicom.uid import generate_uid

    groups: list[list[Path]] = [[] for _ in range(studies)]
    study_uids = [(generate_uid(), generate_uid()) for _ in range(studies)]
    for i in range(instances):
        s = i % studies
        ds = pydicom.dcmread(dicom_testfile(FILES[i % len(FILES)]))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uids[s]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        p = work / "send" / f"{i:04d}.dcm"
        p.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(p)
        groups[s].append(p)
    return groups


def run(args) -> dict:
    import pydicom
    from _orthanc import AET, CLIENT_AET, Orthanc, orthanc_binary

    from sonoseg.infer.predictor import Predictor
    from sonoseg.pacs import dimse
    from sonoseg.pacs.config import PacsServer
    from sonoseg.pacs.listener import Listener, ListenerSettings
    from sonoseg.pacs.query import study_tag
    from sonoseg.pacs.sinks import PacsSink

    if orthanc_binary() is None:
        sys.exit("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    work = Path(tempfile.mkdtemp(prefix="sonoseg-bench-pacs-"))
    groups = _inputs(work, args.instances, args.studies)
    predictor = Predictor.from_path(args.model, backend=args.backend, threads=args.threads)
    orthanc = Orthanc().start()
    pacs = PacsServer("orthanc", host="127.0.0.1", port=orthanc.dicom_port, ae_title=AET, calling_ae_title=CLIENT_AET)
    to_listener = PacsServer("listener", host="127.0.0.1", port=orthanc.listener_port, ae_title=CLIENT_AET,
                             calling_ae_title="MODALITY")
    received_at: dict[str, float] = {}
    stored_at: dict[str, float] = {}

    def on_study(res):
        stored_at[res.study] = time.perf_counter()

    settings = ListenerSettings(work_dir=work / "listener", ae_title=CLIENT_AET, port=orthanc.listener_port,
                                quiet_s=args.quiet_period, domain=False)
    listener = Listener(settings, predictor, [PacsSink(pacs, "dimse")], on_study=on_study).start()
    try:
        t0 = time.perf_counter()
        for g in groups:
            dimse.store(to_listener, g)
            received_at[study_tag(pydicom.dcmread(g[0], stop_before_pixels=True).StudyInstanceUID)] = time.perf_counter()
        t_recv = time.perf_counter() - t0
        ok = listener.wait_idle(args.max_seconds)
        t_end = max(stored_at.values(), default=time.perf_counter())
        t1 = time.perf_counter()
        for _ in range(args.repeat - 1):  # the same studies again: nothing new must reach Orthanc
            for g in groups:
                dimse.store(to_listener, g)
            ok = listener.wait_idle(args.max_seconds) and ok
        t_resend = time.perf_counter() - t1 - (args.quiet_period if args.repeat > 1 else 0.0)
        stats = listener.stats
        in_orthanc = sum(len(x["Instances"]) for x in orthanc.post("/tools/find", {"Level": "Series", "Expand": True,
                                                                                 "Query": {"Modality": "SEG"}}))
    finally:
        listener.stop(flush=False)
        orthanc.stop()
    lat = [stored_at[k] - received_at[k] for k in received_at if k in stored_at]
    return {
        "cpu": _cpu(), "threads": predictor.backend.threads, "backend": predictor.backend.kind,
        "model_version": predictor.model_version, "instances": args.instances, "studies": args.studies,
        "quiet_period_s": args.quiet_period, "complete": bool(ok) and stats.segs_sent == args.instances,
        "received": stats.received, "segmented": stats.segmented, "segs_stored": stats.segs_sent,
        "failures": stats.failures,
        "receive_inst_per_s": round(args.instances / t_recv, 2),
        "e2e_inst_per_s": round(stats.segs_sent / (t_end - t0), 3),
        "segment_inst_per_s": round(stats.segmented / stats.busy_s, 3) if stats.busy_s else None,
        "seg_latency_median_s": round(statistics.median(lat), 2) if lat else None,
        "wall_s": round(t_end - t0, 2),
        "repeat": args.repeat, "received_in_all": stats.received, "passed_over": stats.duplicates,
        "segs_in_orthanc": in_orthanc, "one_seg_per_image": in_orthanc == args.instances,
        "resend_s": round(t_resend, 2) if args.repeat > 1 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--instances", type=int, default=24)
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--quiet-period", type=float, default=1.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--repeat", type=int, default=1, help="send the same studies this many times in all")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pacs.json")
    args = ap.parse_args()
    r = run(args)
    cols = [("threads", "threads", "{}"), ("backend", "backend", "{}"), ("instances", "instances", "{}"),
            ("studies", "studies", "{}"), ("receive inst/s", "receive_inst_per_s", "{:.1f}"),
            ("e2e inst/s", "e2e_inst_per_s", "{:.2f}"), ("segment inst/s", "segment_inst_per_s", "{:.2f}"),
            ("SEG latency s", "seg_latency_median_s", "{:.1f}"), ("SEGs stored", "segs_stored", "{}"),
            ("sent in all", "repeat", "{}x"), ("passed over", "passed_over", "{}"),
            ("SEGs in Orthanc", "segs_in_orthanc", "{}"), ("resend s", "resend_s", "{:.1f}")]
    print(f"sonoseg listen -> Orthanc, end to end; CPU {r['cpu']}; quiet period {r['quiet_period_s']} s")
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("| " + " | ".join("---" for _ in cols) + " |")
    print("| " + " | ".join(f.format(r[k]) if r[k] is not None else "-" for _, k, f in cols) + " |")
    if args.repeat > 1 and not r["one_seg_per_image"]:
        print(f"DUPLICATES: {r['segs_in_orthanc']} SEGs in Orthanc for {r['instances']} images")
    if not r["complete"]:
        print(f"INCOMPLETE: {r['segs_stored']} of {r['instances']} SEGs stored, {r['failures']} failure(s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=1) + "\n")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Out-of-scope detection of the shipped model: flag rates and ROC AUC.

    .venv/bin/python bench/domain.py ../shared/data/busi docs/default_model/training_split.csv

In-domain: BUSI test split (never used for the statistics or the threshold) and BUSI images that
are in no split of the split file (the 133 lesion-free "normal" images, never used in training). Out of
domain: every distinct ultrasound image shipped by pydicom / pydicom-data (obstetric, cardiac,
abdominal, colour Doppler; the first frame of a cine), and speckle phantoms (sonoseg.data.phantom).
Score = what ``predict`` reports as ``domain.score`` (sonoseg.infer.domain); flagged = score >
the stored threshold. ROC AUC = P(out-of-domain score > in-domain score) (Mann-Whitney), ties 1/2.
Writes bench/results/domain.json and domain.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def auc(neg: np.ndarray, pos: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([neg, pos]))
    return float((r[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def us_dicoms() -> list[Path]:
    """Distinct ultrasound DICOMs of pydicom + pydicom-data (same-pixel variants kept once)."""
    import pydicom
    from conftest import _dicom_dirs

    from sonoseg.io import iter_frames

    seen, out = set(), []
    for d in _dicom_dirs():
        for p in sorted(d.glob("*")):
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM
                continue
            cls = getattr(ds.get("SOPClassUID", ""), "name", "")
            if str(ds.get("Modality", "")) != "US" and "Ultrasound" not in cls:
                continue
            try:
                f = next(iter(iter_frames(p)))
            except Exception:  # noqa: BLE001 - undecodable here: not part of the benchmark
                continue
            small = np.asarray(f, dtype=np.float32)
            if small.ndim == 3:
                small = small.mean(-1)
            import cv2

            key = hashlib.sha1((cv2.resize(small, (16, 16)) // 16).astype(np.uint8).tobytes()).hexdigest()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("split_file", type=Path)
    ap.add_argument("--phantoms", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()

    from sonoseg.data import discover_dataset, read_split_csv
    from sonoseg.data.phantom import make_phantom
    from sonoseg.runtime.backends import load_torch_model
    from sonoseg.infer.default_model import default_model_path
    from sonoseg.infer.domain import DomainScorer, encoder_features, file_features
    from sonoseg.preprocess import preprocess_image

    t0 = time.time()
    scorer = DomainScorer.for_model(None)
    if scorer is None:
        print("the shipped model has no domain sidecar (run scripts/domain_stats.py)")
        return 1
    cfg = load_torch_model(default_model_path())[1]
    split = read_split_csv(a.split_file)
    samples = discover_dataset(a.dataset)
    sets = {
        "busi_test": [s.image_path for s in samples if split.get(s.stem) == "test"],
        "busi_not_in_split": [s.image_path for s in samples if s.stem not in split],
        "pydicom_us": us_dicoms(),
    }
    scores = {k: scorer.stats.score(file_features(scorer.model, cfg, v)) if v else np.zeros(0) for k, v in sets.items()}
    ph = [preprocess_image(make_phantom((256, 256), seed=i, sector=bool(i % 2), ui_overlay=bool(i % 3 == 0)).image,
                           cfg.preprocess).image for i in range(a.phantoms)]
    scores["phantoms"] = scorer.stats.score(encoder_features(scorer.model, np.stack(ph))) if ph else np.zeros(0)
    thr = scorer.stats.threshold
    rows = {k: {"n": int(len(v)), "flag_rate": float((v > thr).mean()) if len(v) else None,
                "score_median": float(np.median(v)) if len(v) else None} for k, v in scores.items()}
    rows["pydicom_us"]["files"] = {p.name: round(float(s), 3) for p, s in zip(sets["pydicom_us"], scores["pydicom_us"])}
    ind = np.concatenate([scores["busi_test"], scores["busi_not_in_split"]])
    ood = np.concatenate([scores["pydicom_us"], scores["phantoms"]])
    result = {
        "threshold": thr, "statistics": scorer.stats.info, "sets": rows,
        "roc_auc": {"in_domain_vs_pydicom_us": auc(ind, scores["pydicom_us"]),
                    "in_domain_vs_phantoms": auc(ind, scores["phantoms"]),
                    "in_domain_vs_all_out_of_domain": auc(ind, ood)},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "seconds": round(time.time() - t0, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "domain.json").write_text(json.dumps(result, indent=2))
    lines = ["| set | n | flagged out of scope | median score |", "| --- | --: | --: | --: |"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['n']} | {100 * (r['flag_rate'] or 0):.1f} % | {r['score_median'] or 0:.2f} |")
    lines += ["", f"threshold {thr:.3f} (97.5th percentile of BUSI validation scores); ROC AUC: "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["roc_auc"].items())]
    (a.out / "domain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

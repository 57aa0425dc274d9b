"""Fit the class head's temperature on validation images and store it in a copy of the checkpoint.

Usage:
    sonoseg evaluate DATASET --model M.pt --split-file SPLIT.csv --split val --out eval-val
    python scripts/fit_temperature.py M.pt eval-val/per_image_class.csv --out M-calibrated.pt

Reads the class probabilities `sonoseg evaluate` wrote for each image (per_image_class.csv: true_class,
p_<name>...), fits T by minimising their negative log-likelihood (sonoseg.evaluate.calibration), prints
the validation NLL and ECE before and after, and writes ``--out``: the same file (weights byte for byte,
int8 storage kept) with ``model.classification.temperature`` multiplied by T (so a model that already
has a temperature is refined, not reset). Fit on the validation split only: the test split measures it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from sonoseg.evaluate.calibration import apply_temperature, fit_temperature, logits_from_probs, mean_nll
from sonoseg.metrics.classification import expected_calibration_error


def read_probs(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows = list(csv.DictReader(open(path, newline="")))
    if not rows:
        raise SystemExit(f"error: {path}: no rows")
    names = [k[2:] for k in rows[0] if k.startswith("p_")]
    probs = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])
    try:
        labels = np.array([names.index(r["true_class"]) for r in rows])
    except ValueError as exc:
        raise SystemExit(f"error: {path}: a true_class is not one of {names} ({exc})")
    return probs, labels, names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("per_image_class", type=Path, help="per_image_class.csv of `sonoseg evaluate --split val`")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    probs, labels, names = read_probs(a.per_image_class)
    logits = logits_from_probs(probs)
    t = fit_temperature(logits, labels)
    cal = apply_temperature(probs, t)

    payload = torch.load(a.model, map_location="cpu", weights_only=False)
    cc = payload["config"]["model"].get("classification")
    if not cc:
        raise SystemExit(f"error: {a.model}: the model has no class head")
    if list(cc.get("names") or names) != names:
        raise SystemExit(f"error: {a.per_image_class}: classes {names} are not the model's {cc.get('names')}")
    old = float(cc.get("temperature", 1.0))
    cc["temperature"] = old * t
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, a.out)
    print(f"{len(labels)} images; fitted T = {t:.3f} (stored {old:.3f} -> {old * t:.3f})")
    ece = [expected_calibration_error(p, labels)[0] for p in (probs, cal)]
    print(f"NLL {mean_nll(logits, labels):.3f} -> {mean_nll(logits, labels, t):.3f}; ECE {ece[0]:.3f} -> {ece[1]:.3f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image-level classification metrics of a class head: accuracy, balanced accuracy, per-class sensitivity
and specificity, one-vs-rest ROC AUC (and one named pair, e.g. benign vs malignant), confusion matrix,
expected calibration error; bootstrap 95% CIs by resampling images.

Conventions: sensitivity of a class with no positive image is undefined (NaN) and is left out of the
balanced accuracy (the mean of the defined sensitivities); an AUC needs both positives and negatives,
else NaN. AUC is the Mann-Whitney statistic (ties count one half), the same value as the trapezoidal
area under the empirical ROC curve. ECE uses ``bins`` equal-width bins of the top-class confidence,
weighted by bin size. Bootstrap resamples skip no draw: a statistic undefined on a draw is NaN there
and the CI uses the defined draws.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows = true class, columns = predicted class."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, int), np.asarray(pred, int)), 1)
    return cm


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``positive`` (NaN without both kinds)."""
    scores = np.asarray(scores, float)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over all thresholds, from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, float)
    positive = np.asarray(positive, bool)
    thr = np.unique(scores)[::-1]
    tpr = [0.0] + [float((scores[positive] >= t).mean()) if positive.any() else math.nan for t in thr]
    fpr = [0.0] + [float((scores[~positive] >= t).mean()) if (~positive).any() else math.nan for t in thr]
    return np.array(fpr), np.array(tpr)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """(ECE, per-bin rows {lo, hi, n, confidence, accuracy}) of the top-class confidence."""
    probs = np.asarray(probs, float)
    labels = np.asarray(labels, int)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        row = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
               "confidence": float(conf[m].mean()) if n else math.nan,
               "accuracy": float(correct[m].mean()) if n else math.nan}
        rows.append(row)
        if n:
            ece += n / len(conf) * abs(row["confidence"] - row["accuracy"])
    return float(ece), rows


def _point(probs: np.ndarray, labels: np.ndarray, names: Sequence[str], pair: Optional[tuple[int, int]]) -> dict:
    k = len(names)
    pred = probs.argmax(1)
    cm = confusion_matrix(labels, pred, k)
    n = cm.sum()
    out: dict = {"accuracy": float(np.trace(cm) / n) if n else math.nan}
    sens = []
    for c, name in enumerate(names):
        tp, fn = cm[c, c], cm[c].sum() - cm[c, c]
        fp = cm[:, c].sum() - tp
        tn = n - tp - fn - fp
        se = float(tp / (tp + fn)) if tp + fn else math.nan
        sp = float(tn / (tn + fp)) if tn + fp else math.nan
        out[f"sensitivity_{name}"] = se
        out[f"specificity_{name}"] = sp
        out[f"auc_{name}_vs_rest"] = roc_auc(probs[:, c], labels == c)
        sens.append(se)
    defined = [s for s in sens if not math.isnan(s)]
    out["balanced_accuracy"] = float(np.mean(defined)) if defined else math.nan
    aucs = [out[f"auc_{nm}_vs_rest"] for nm in names if not math.isnan(out[f"auc_{nm}_vs_rest"])]
    out["auc_macro"] = float(np.mean(aucs)) if aucs else math.nan
    if pair is not None:
        a, b = pair
        m = (labels == a) | (labels == b)
        score = probs[m, b] / np.maximum(probs[m, a] + probs[m, b], 1e-12)  # P(b | a or b)
        out[f"auc_{names[a]}_vs_{names[b]}"] = roc_auc(score, labels[m] == b)
    out["ece"] = expected_calibration_error(probs, labels)[0]
    return out


def class_metrics(probs: np.ndarray, labels: np.ndarray, names: Sequence[str],
                  pair: Optional[tuple[str, str]] = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Point values and bootstrap 95% CIs: ``{"n", "names", "metrics": {name: {"value", "ci95"}},
    "confusion_matrix"}``. Images with an unknown label (< 0) are left out. ``pair=("benign",
    "malignant")`` adds that two-class AUC (scored by P(malignant | benign or malignant))."""
    probs = np.asarray(probs, float)
    labels = np.asarray(labels, int)
    keep = labels >= 0
    probs, labels = probs[keep], labels[keep]
    names = list(names)
    pidx = None
    if pair is not None and pair[0] in names and pair[1] in names:
        pidx = (names.index(pair[0]), names.index(pair[1]))
    point = _point(probs, labels, names, pidx)
    boots = {k: [] for k in point}
    rng = np.random.default_rng(seed)
    for _ in range(n_boot if len(labels) else 0):
        i = rng.integers(0, len(labels), len(labels))
        for k, v in _point(probs[i], labels[i], names, pidx).items():
            boots[k].append(v)
    metrics = {}
    for k, v in point.items():
        b = np.asarray(boots[k], float)
        b = b[np.isfinite(b)]
        ci = [float(x) for x in np.percentile(b, [2.5, 97.5])] if b.size else [math.nan, math.nan]
        metrics[k] = {"value": v, "ci95": ci}
    return {"n": int(len(labels)), "names": names, "metrics": metrics,
            "confusion_matrix": confusion_matrix(labels, probs.argmax(1), len(names)).tolist()}


def quick_scores(probs: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """Validation-time point values without CIs: accuracy, balanced accuracy, macro one-vs-rest AUC."""
    probs = np.asarray(probs, float)
    labels = np.asarray(labels, int)
    keep = labels >= 0
    p = _point(probs[keep], labels[keep], [str(i) for i in range(k)], None)
    return {"acc": p["accuracy"], "bacc": p["balanced_accuracy"], "auc": p["auc_macro"]}

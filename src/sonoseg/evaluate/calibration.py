"""Temperature scaling of a class head (Guo et al., "On calibration of modern neural networks", 2017).

One scalar T > 0 divides the class logits before the softmax; it is fit by minimising the negative
log-likelihood of the true classes on held-out images (the validation split, never the test split).
It leaves the arg-max, hence accuracy, the confusion matrix and every ROC AUC, unchanged and makes the
probabilities less (T > 1) or more (T < 1) extreme. Probabilities work as input too: log p differs from
the logits by a per-image constant, which the softmax ignores.

One parameter, so a bounded scalar minimisation over log T (scipy) is enough; no torch needed.
"""

from __future__ import annotations

import numpy as np


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def mean_nll(logits: np.ndarray, labels: np.ndarray, t: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(``logits`` / t)."""
    logp = _log_softmax(np.asarray(logits, np.float64) / t)
    return float(-logp[np.arange(len(labels)), np.asarray(labels, int)].mean())


def logits_from_probs(probs: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Log-probabilities, usable as logits for temperature scaling (softmax(log p) = p)."""
    return np.log(np.clip(np.asarray(probs, np.float64), eps, 1.0))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T minimising the mean NLL of ``labels`` under softmax(``logits`` / T) (N x K, N labels)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, int)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need N x K logits and N labels, got {logits.shape} and {labels.shape}")
    res = minimize_scalar(lambda lt: mean_nll(logits, labels, float(np.exp(lt))),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))


def apply_temperature(probs_or_logits: np.ndarray, t: float, are_probs: bool = True) -> np.ndarray:
    """softmax(logits / t); with ``are_probs`` the input is probabilities (converted to log p first)."""
    z = logits_from_probs(probs_or_logits) if are_probs else np.asarray(probs_or_logits, np.float64)
    return np.exp(_log_softmax(z / t))

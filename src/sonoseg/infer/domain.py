"""Out-of-scope detection: does an input look like the model's training images?

Score = Mahalanobis distance of the input's pooled encoder features to the training-feature
distribution, in the top-``k`` principal subspace, plus the residual outside it::

    score = sqrt( sum_i (z_i^2 / lambda_i) / k  +  |residual|^2 / (sigma_res^2 * D) )

(features = global average of the network's deepest, lowest-resolution convolution; see
:func:`encoder_features`). Statistics (mean, components, eigenvalues, residual variance) are fitted
on the training images only; the flag threshold is a percentile of the scores of the *validation*
images, so an in-domain unseen image is flagged at about ``100 - percentile`` %. They are stored in a
small sidecar ``<model stem>.domain.npz`` next to the model file (fp16 components), so any backend
can use them; scoring itself runs the PyTorch checkpoint once per input (``bench/domain.py``
measures the flag rates and the ROC AUC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

SIDECAR_SUFFIX = ".domain.npz"


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name.split(".")[0] + SIDECAR_SUFFIX)


def encoder_features(model, grid: np.ndarray) -> np.ndarray:
    """N×D pooled features: the output of the convolution with the smallest spatial size (most
    channels on ties, first in call order) = the end of the encoder, globally averaged."""
    import torch

    from sonoseg.models.padding import unwrap

    net = unwrap(model)
    seen: list = []

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor) and out.ndim == 4:
            seen.append(out)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        x = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
        if x.ndim == 3:
            x = x[:, None]
        ch = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
        if x.shape[1] != ch:
            x = x.repeat(1, ch, 1, 1)
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    best = min(seen, key=lambda t: (t.shape[2] * t.shape[3], -t.shape[1]))
    return best.float().mean(dim=(2, 3)).numpy()


@dataclass
class DomainStats:
    mean: np.ndarray  # D
    components: np.ndarray  # k×D (orthonormal rows)
    eigvals: np.ndarray  # k
    residual_var: float  # mean squared residual per dimension (training)
    threshold: float
    info: dict

    @classmethod
    def fit(cls, train_feats: np.ndarray, val_feats: np.ndarray, k: int = 16, percentile: float = 97.5,
            info: Optional[dict] = None) -> "DomainStats":
        f = np.asarray(train_feats, dtype=np.float64)
        mean = f.mean(0)
        u, s, vt = np.linalg.svd(f - mean, full_matrices=False)
        k = int(min(k, len(s) - 1))
        eig = (s[:k] ** 2) / max(len(f) - 1, 1)
        comp = vt[:k]
        res = (f - mean) - ((f - mean) @ comp.T) @ comp
        rv = float((res**2).mean()) + 1e-12
        st = cls(mean.astype(np.float32), comp.astype(np.float16), eig.astype(np.float32), rv, 0.0, dict(info or {}))
        st.threshold = float(np.percentile(st.score(val_feats), percentile))
        st.info.update({"k": k, "percentile": percentile, "n_train": len(f), "n_val": len(val_feats)})
        return st

    def score(self, feats: np.ndarray) -> np.ndarray:
        f = np.atleast_2d(np.asarray(feats, dtype=np.float64)) - self.mean
        comp = self.components.astype(np.float64)
        z = f @ comp.T
        res = f - z @ comp
        d = f.shape[1]
        return np.sqrt((z**2 / self.eigvals).sum(1) / len(self.eigvals) + (res**2).sum(1) / (self.residual_var * d))

    def save(self, path: str | Path) -> Path:
        np.savez_compressed(path, mean=self.mean, components=self.components, eigvals=self.eigvals,
                            residual_var=np.float64(self.residual_var), threshold=np.float64(self.threshold),
                            info=np.array(json.dumps(self.info)))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "DomainStats":
        z = np.load(path, allow_pickle=False)
        return cls(z["mean"], z["components"], z["eigvals"], float(z["residual_var"]), float(z["threshold"]),
                   json.loads(str(z["info"])))


class DomainScorer:
    """Scores preprocessed (model-grid) images against the stats stored beside a checkpoint."""

    def __init__(self, model, stats: DomainStats):
        self.model = model
        self.stats = stats

    @classmethod
    def for_model(cls, model_path: Optional[str | Path], torch_model=None) -> Optional["DomainScorer"]:
        """None when the model has no sidecar or is not a PyTorch checkpoint (then no score is given)."""
        from sonoseg.models.shipped import resolve_model

        path = resolve_model(model_path, "predict")
        side = sidecar_path(path)
        if not side.is_file():
            return None
        if torch_model is None:
            if path.suffix not in (".pt", ".pth", ".ckpt"):
                return None
            return _cached_scorer(str(path.resolve()), path.stat().st_mtime_ns, str(side))
        return cls(torch_model, DomainStats.load(side))

    def scores(self, grids: Iterable[np.ndarray]) -> np.ndarray:
        g = np.stack(list(grids))
        return self.stats.score(encoder_features(self.model, g))

    def assess(self, grid: np.ndarray) -> dict:
        s = float(self.scores([grid])[0])
        return {"score": round(s, 4), "threshold": round(self.stats.threshold, 4),
                "in_scope": bool(s <= self.stats.threshold), "method": "encoder-feature Mahalanobis (PCA)"}


@lru_cache(maxsize=4)
def _cached_scorer(path: str, _mtime_ns: int, side: str) -> DomainScorer:
    """One PyTorch copy of a model per process for scoring (a server scores every job with it)."""
    from sonoseg.runtime.backends import load_torch_model

    model, _ = load_torch_model(path)
    return DomainScorer(model, DomainStats.load(side))


def confidence(mask: np.ndarray, probability: Optional[np.ndarray]) -> Optional[float]:
    """Per-result confidence in [0, 1]: mean foreground probability inside the predicted mask, or,
    for an empty mask, 1 - the image's highest foreground probability (how sure "nothing" is)."""
    if probability is None:
        return None
    p = np.asarray(probability, dtype=np.float32)
    m = np.asarray(mask) > 0
    if m.any():
        return round(float(p[m].mean()), 4)
    return round(float(1.0 - p.max()), 4) if p.size else None


def grid_of_file(path: str | Path, config, frame: Optional[int] = None) -> np.ndarray:
    """The model-grid image predict would score for a file: its first (or ``frame``-th) frame,
    preprocessed with the model's own preprocessing."""
    from itertools import islice

    from sonoseg.io import iter_frames, read_meta
    from sonoseg.preprocess import preprocess_image

    meta = read_meta(path)
    k = 0 if frame is None else int(frame)
    img = next(islice(iter_frames(path), k, k + 1))
    return preprocess_image(img, config.preprocess, meta).image


def file_features(model, config, paths: Iterable[str | Path], batch: int = 16) -> np.ndarray:
    """Pooled encoder features (N×D) of the first frame of each file."""
    out, buf = [], []
    for p in paths:
        buf.append(grid_of_file(p, config))
        if len(buf) == batch:
            out.append(encoder_features(model, np.stack(buf)))
            buf = []
    if buf:
        out.append(encoder_features(model, np.stack(buf)))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

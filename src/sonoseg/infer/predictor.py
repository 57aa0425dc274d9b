"""Model + preprocessing config -> masks in the ORIGINAL image geometry.

A Predictor is built from a checkpoint, an exported ONNX/TorchScript file or the shipped default;
the preprocessing config always comes from the model file, so inference matches training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from sonoseg.config import SonosegConfig
from sonoseg.io.types import ImageMeta


@dataclass
class PostprocessOptions:
    keep_largest: bool = False
    min_size: int = 0  # pixels
    fill_holes: bool = False
    tentative_outline: bool = False  # see SonosegConfig.postprocess.tentative_outline


def merge_postprocess(config: SonosegConfig, keep_largest: Optional[bool] = None, min_size: Optional[int] = None,
                      fill_holes: Optional[bool] = None, tentative_outline: Optional[bool] = None) -> PostprocessOptions:
    """CLI flags that were given override the model's stored postprocessing; the rest come from it."""
    pc = config.postprocess
    return PostprocessOptions(pc.keep_largest if keep_largest is None else keep_largest,
                              pc.min_size if min_size is None else min_size,
                              pc.fill_holes if fill_holes is None else fill_holes,
                              pc.tentative_outline if tentative_outline is None else tentative_outline)


@dataclass
class Prediction:
    mask: np.ndarray  # HxW uint8 labels in original image pixels
    probability: np.ndarray  # HxW float32 foreground probability (binary) / max class prob, original pixels
    grid_probability: np.ndarray  # KxHxW on the model grid (K=1 for binary)
    transform: object  # preprocess GridTransform
    grid_image: np.ndarray = field(repr=False, default=None)
    class_probabilities: Optional[np.ndarray] = None  # C softmax probabilities of the class head, or None
    class_names: tuple[str, ...] = ()
    # the mask is a tentative outline: the class head found a lesion, the mask head stayed below its threshold
    tentative: bool = False

    @property
    def predicted_class(self) -> Optional[str]:
        if self.class_probabilities is None or not self.class_names:
            return None
        return self.class_names[int(np.argmax(self.class_probabilities))]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function written through tanh: no overflow warning for large negative logits."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def model_version(config: SonosegConfig, path: Optional[Path] = None) -> str:
    """``model.version`` of a shipped model, else the file name plus the first 12 hex digits of its
    SHA-256, so every result names exactly the weights that produced it."""
    if config.model.version:
        return config.model.version
    if path is None or not Path(path).is_file():
        return "unversioned"
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{Path(path).name}@{h.hexdigest()[:12]}"


class Predictor:
    """``threshold``/``postprocess``/``tta`` left as None take the model's own ``config.postprocess``
    (chosen on its validation split and stored with it); given values override it."""

    def __init__(self, backend, config: SonosegConfig, threshold: Optional[float] = None,
                 postprocess: Optional[PostprocessOptions] = None, tta: Optional[Sequence[str]] = None):
        self.backend = backend
        self.config = config
        self.model_version = config.model.version or "unversioned"
        self.path: Optional[Path] = None  # the model file, when loaded by from_path (its domain statistics)
        pc = config.postprocess
        self.threshold = pc.threshold if threshold is None else threshold
        self.post = postprocess or merge_postprocess(config)
        self.tta = tuple(pc.tta if tta is None else tta)
        cc = config.model.classification
        self.temperature = float(cc.temperature) if cc is not None else 1.0  # class-logit temperature

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_path(cls, path: Optional[str | Path] = None, options=None, log=None, **legacy) -> "Predictor":
        """``path``: .pt checkpoint, .onnx, .ts/.torchscript, or None for the shipped default model.
        ``options``: a :class:`~sonoseg.infer.options.ModelOptions` (a PredictOptions is one):
        ``backend="auto"`` picks the fastest backend that is correct on this machine
        (:func:`sonoseg.runtime.backend_choice.choose_backend`); ``threads`` None = the machine's default
        (:func:`sonoseg.system.default_threads`); threshold, postprocessing and TTA left as None come
        from the model's stored config. ``log`` receives one-line notes (what was built, which backend).
        ``legacy``: the previous release's keywords (``backend=``, ``threads=`` ...), with a
        DeprecationWarning; ``postprocess=`` (a PostprocessOptions) replaces the merged postprocessing."""
        from sonoseg.runtime.backend_choice import choose_backend
        from sonoseg.models.shipped import resolve_model
        from sonoseg._compat.legacy_kwargs import options_with_legacy
        from sonoseg.infer.options import ModelOptions
        from sonoseg.system import resolve_threads

        post = legacy.pop("postprocess", None)
        o = options_with_legacy(ModelOptions, options, legacy, "Predictor.from_path", none_is_default=True)
        path = resolve_model(path, "predict")  # None -> the fast tier; fast / accurate / v3 -> shipped files
        threads = resolve_threads(o.threads, warn=log)
        be = choose_backend(o.backend, path, threads=threads, log=log)
        if be.config is None:
            from sonoseg.errors import InputError

            raise InputError(path, "model file carries no sonoseg config (preprocessing unknown)")
        post = post or merge_postprocess(be.config, o.keep_largest, o.min_size, o.fill_holes, o.tentative_outline)
        pred = cls(be, be.config, o.threshold, post, o.tta)
        pred.model_version = model_version(be.config, path)
        pred.path = path
        return pred

    @property
    def classes(self) -> int:
        return self.config.model.classes

    # -- core ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.model.class_names())

    def _run_grid(self, grid: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """grid N x H x W float32 -> (probabilities N x K x H x W, class probabilities N x C or None).
        Flip TTA averages both."""
        x = grid[:, None].astype(np.float32, copy=False)
        if self.config.model.in_channels > 1:
            x = np.repeat(x, self.config.model.in_channels, axis=1)

        def probs(inp):
            inp = np.ascontiguousarray(inp)
            if hasattr(self.backend, "run_all"):
                logits, cl = self.backend.run_all(inp)
            else:  # a bare object with run() only (tests, third-party backends)
                logits, cl = self.backend.run(inp), None
            logits = np.asarray(logits, dtype=np.float32)
            seg = _sigmoid(logits) if self.classes == 1 else _softmax(logits, 1)
            return seg, (None if cl is None else _softmax(np.asarray(cl, dtype=np.float32) / self.temperature, 1))

        if not self.tta:
            return probs(x)
        from sonoseg.infer.tta import flip_sets  # same flip combinations as evaluate.tta_predict

        sets = flip_sets(self.tta)
        acc, acc_c = None, None
        for axes in sets:
            y, c = probs(np.ascontiguousarray(np.flip(x, axes))) if axes else probs(x)
            y = np.flip(y, axes) if axes else y
            acc = y if acc is None else acc + y
            if c is not None:
                acc_c = c if acc_c is None else acc_c + c
        return acc / len(sets), (None if acc_c is None else acc_c / len(sets))

    def _finish(self, prob_grid: np.ndarray, transform, grid_image=None, class_probs=None) -> Prediction:
        tentative = False
        if self.classes == 1:
            p = transform.to_original(prob_grid[0], interpolation="linear").astype(np.float32)
            mask = self.mask_from_probability(p)
            if self.post.tentative_outline and class_probs is not None and not mask.any() \
                    and self._head_finds_lesion(class_probs):
                mask = self._tentative(p)
                tentative = bool(mask.any())
        else:
            ps = np.stack([transform.to_original(prob_grid[c], interpolation="linear") for c in range(self.classes)])
            mask = self._post(ps.argmax(0).astype(np.uint8))
            p = ps.max(0).astype(np.float32)
        return Prediction(mask, p, prob_grid, transform, grid_image, class_probs,
                          self.class_names if class_probs is not None else (), tentative)

    def _head_finds_lesion(self, class_probs: np.ndarray) -> bool:
        from sonoseg.infer.decision import DecisionPolicy, head_finds_lesion

        head = self.config.model.classification
        if head is None or head.no_lesion_class not in self.class_names:
            return False
        return head_finds_lesion(class_probs, self.class_names, head.no_lesion_class, DecisionPolicy.from_head(head))

    def _tentative(self, p: np.ndarray) -> np.ndarray:
        from sonoseg.infer.postprocess import tentative_region

        pc = self.config.postprocess
        return self._post(tentative_region(p, pc.tentative_fraction, pc.tentative_min_peak).astype(np.uint8))

    def mask_from_probability(self, p: np.ndarray) -> np.ndarray:
        """Binary models: foreground probability (original pixels) -> thresholded, postprocessed mask
        (also used on temporally smoothed cine probabilities)."""
        return self._post((p >= self.threshold).astype(np.uint8))

    def _post(self, mask: np.ndarray) -> np.ndarray:
        from sonoseg.infer.postprocess import postprocess

        if self.post.keep_largest or self.post.min_size or self.post.fill_holes:
            mask = postprocess(mask, keep_largest=self.post.keep_largest, min_size=self.post.min_size,
                               fill_holes=self.post.fill_holes, classes=self.classes).astype(np.uint8)
        return mask

    def predict(self, image: np.ndarray, meta: Optional[ImageMeta] = None) -> Prediction:
        return next(self.predict_stream([image], meta, batch_size=1))

    def predict_stream(self, frames: Iterable[np.ndarray], meta: Optional[ImageMeta] = None,
                       batch_size: int = 8) -> Iterator[Prediction]:
        """Streams frames in batches: memory stays bounded by ``batch_size`` whatever the frame count."""
        from sonoseg.preprocess import preprocess_image

        buf = []
        for frame in frames:
            buf.append(preprocess_image(frame, self.config.preprocess, meta))
            if len(buf) == batch_size:
                yield from self._flush(buf)
                buf = []
        if buf:
            yield from self._flush(buf)

    def _flush(self, buf) -> Iterator[Prediction]:
        probs, cls = self._run_grid(np.stack([b.image for b in buf]))
        for i, (b, pg) in enumerate(zip(buf, probs)):
            yield self._finish(pg, b.transform, b.image, None if cls is None else cls[i])

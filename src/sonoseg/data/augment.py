"""Joint image + mask augmentation on the model grid (albumentations 2.x), training split only.

Geometry (seed 004 §3.4: shifts up to +-20 % of height/width, scale 0.5-2, plus small rotations and
flips) is applied identically to image (linear) and mask (nearest, labels preserved) with
``A.Affine``/flips. Intensity changes (brightness/contrast, additive Gaussian noise, multiplicative
speckle I*(1+n), gamma curves, Gaussian blur -- what differs between scanners and presets) touch
the image only.

albumentations clips float images to [0, 1] in its intensity transforms, which would destroy
z-scored inputs; images outside [0, 1] therefore go through the intensity transforms mapped
linearly onto [0, 1] (by their own min/max) and are mapped back afterwards.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

import albumentations as A
import cv2
import numpy as np

from sonoseg.config import AugmentConfig

AugmentFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Speckle(A.ImageOnlyTransform):
    """Multiplicative speckle-like noise: I * (1 + n), n ~ N(0, sigma^2) per pixel,
    sigma ~ U(sigma_range). (A.MultiplicativeNoise draws uniform multipliers, not Gaussian.)"""

    def __init__(self, sigma_range: tuple[float, float] = (0.0, 0.15), p: float = 0.5):
        super().__init__(p=p)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        image = data["image"]
        sigma = self.random_generator.uniform(*self.sigma_range)
        noise = self.random_generator.standard_normal(image.shape).astype(np.float32) * np.float32(sigma)
        return {"noise": noise}

    def apply(self, img: np.ndarray, noise: np.ndarray, **params: Any) -> np.ndarray:
        out = img.astype(np.float32) * (1.0 + noise)
        return np.clip(out, 0.0, 1.0) if img.dtype == np.float32 else out.astype(img.dtype)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma_range",)


def _geometric(cfg: AugmentConfig, fill: float = 0.0) -> list[A.BasicTransform]:
    ts: list[A.BasicTransform] = []
    if cfg.hflip > 0:
        ts.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.vflip > 0:
        ts.append(A.VerticalFlip(p=cfg.vflip))
    lo, hi = float(cfg.scale_range[0]), float(cfg.scale_range[1])
    if cfg.affine_p > 0 and (cfg.shift_limit > 0 or cfg.rotate_limit > 0 or (lo, hi) != (1.0, 1.0)):
        s = float(cfg.shift_limit)
        ts.append(
            A.Affine(
                translate_percent={"x": (-s, s), "y": (-s, s)},
                scale=(lo, hi),
                keep_ratio=True,
                balanced_scale=True,  # zoom in and zoom out equally likely (0.5-1 vs 1-2)
                rotate=(-float(cfg.rotate_limit), float(cfg.rotate_limit)),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=float(fill),
                fill_mask=0,
                p=cfg.affine_p,
            )
        )
    return ts


def _intensity(cfg: AugmentConfig) -> list[A.BasicTransform]:
    ts: list[A.BasicTransform] = []
    if cfg.brightness_contrast_p > 0 and cfg.brightness_contrast > 0:
        bc = float(cfg.brightness_contrast)
        ts.append(A.RandomBrightnessContrast(brightness_limit=bc, contrast_limit=bc, p=cfg.brightness_contrast_p))
    if cfg.gauss_noise_p > 0 and cfg.gauss_noise_std[1] > 0:
        ts.append(A.GaussNoise(std_range=tuple(cfg.gauss_noise_std), mean_range=(0.0, 0.0), p=cfg.gauss_noise_p))
    if cfg.speckle_p > 0 and cfg.speckle_sigma[1] > 0:
        ts.append(Speckle(sigma_range=tuple(cfg.speckle_sigma), p=cfg.speckle_p))
    if cfg.gamma_p > 0:
        g = cfg.gamma_range
        ts.append(A.RandomGamma(gamma_limit=(100 * float(g[0]), 100 * float(g[1])), p=cfg.gamma_p))
    if cfg.blur_p > 0 and cfg.blur_sigma[1] > 0:
        ts.append(A.GaussianBlur(sigma_limit=tuple(float(v) for v in cfg.blur_sigma), blur_limit=0, p=cfg.blur_p))
    return ts


class Augmenter:
    """``aug(image, mask) -> (image, mask)``; image float32 (H, W) or (H, W, C), mask integer labels.

    Seeded for reproducibility. In a forked DataLoader worker every copy would replay the parent's
    random stream, so the first call in a new process reseeds itself from the torch worker seed
    (``base_seed + worker_id``, itself derived from torch's seed) or, outside torch, from the pid.
    ``fill`` is the image value for areas moved in from outside the grid (use cfg.pad_value).
    """

    def __init__(self, cfg: AugmentConfig, seed: Optional[int] = None, fill: float = 0.0):
        self.cfg = cfg
        self.seed = seed
        self.geometric = A.Compose(_geometric(cfg, fill), seed=seed)
        self.intensity = A.Compose(_intensity(cfg), seed=None if seed is None else seed + 1)
        self._pid = os.getpid()

    def reseed(self, seed: Optional[int]) -> None:
        """Restart both random streams (e.g. from a DataLoader worker_init_fn)."""
        self._pid = os.getpid()  # an explicit reseed in a worker replaces the automatic one
        self.geometric.set_random_seed(seed)
        self.intensity.set_random_seed(None if seed is None else seed + 1)

    def _reseed_if_forked(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        seed: Optional[int] = None
        tud = sys.modules.get("torch.utils.data")
        info = tud.get_worker_info() if tud is not None else None
        if info is not None:
            seed = int(info.seed % (2**31))
        elif self.seed is not None:
            seed = (self.seed * 1_000_003 + pid) % (2**31)
        self.reseed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._reseed_if_forked()
        img = np.ascontiguousarray(image, dtype=np.float32)
        m = np.asarray(mask)
        if img.shape[:2] != m.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and mask {m.shape[:2]} differ in size")
        mask_dtype = m.dtype
        m_work = m.astype(np.uint8) if m.dtype == np.bool_ else m
        if m_work.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
            if m_work.size and (m_work.min() < np.iinfo(np.int32).min or m_work.max() > np.iinfo(np.int32).max):
                raise ValueError("mask labels do not fit int32")
            m_work = m_work.astype(np.int32)  # cv2 cannot warp int64
        out = self.geometric(image=img, mask=np.ascontiguousarray(m_work))
        img, m_out = out["image"], out["mask"]
        if self.intensity.transforms:
            lo, hi = float(img.min()), float(img.max())
            if lo >= 0.0 and hi <= 1.0:
                img = self.intensity(image=img)["image"]
            elif hi > lo:
                unit = ((img - lo) / (hi - lo)).astype(np.float32)
                img = self.intensity(image=unit)["image"] * np.float32(hi - lo) + np.float32(lo)
        return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(m_out).astype(mask_dtype, copy=False)


def build_augmentation(cfg: AugmentConfig, seed: Optional[int] = None, fill: float = 0.0) -> Optional[AugmentFn]:
    """The training augmentation described by ``cfg``, or None when disabled / nothing to do.

    ``seed`` makes the sequence of random draws reproducible (pass the training seed); ``fill`` is
    the image value for regions shifted/zoomed in from outside (PreprocessConfig.pad_value).
    """
    if not cfg.enabled:
        return None
    aug = Augmenter(cfg, seed, fill)
    if not aug.geometric.transforms and not aug.intensity.transforms:
        return None
    return aug

"""The shipped calibration set: 100 small training-split breast-ultrasound frames
(``assets/calibration``), preprocessed for a model; int8 quantisation calibrates on four fifths of
them and checks on the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoseg.errors import SonosegError


def calibration_dir() -> Path:
    from sonoseg.models.shipped import assets_dir

    return assets_dir() / "calibration"


def calibration_frames() -> list[np.ndarray]:
    """The shipped calibration frames (8-bit grayscale), in file-name order."""
    import cv2

    files = sorted([*calibration_dir().glob("*.png"), *calibration_dir().glob("*.jpg")])
    if not files:
        raise SonosegError(f"{calibration_dir()}: calibration frames missing from this installation")
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def calibration_grids(config) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration grids, check grids): the shipped frames preprocessed with ``config.preprocess``;
    every fifth frame checks, the rest calibrate (so every class is in both)."""
    from sonoseg.preprocess import preprocess_image

    grids = [preprocess_image(f, config.preprocess).image for f in calibration_frames()]
    return [g for i, g in enumerate(grids) if i % 5 != 4], grids[4::5]

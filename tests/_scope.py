"""Inputs the shipped model must give no verdict on (issue 24 item 1): a green picture reading "NOT AN
ULTRASOUND", as PNG and as an Ultrasound DICOM (the domain check flags both)."""

from __future__ import annotations

from pathlib import Path

CLASS_WORDS = ("normal", "benign", "malignant")


def green_picture():
    import cv2
    import numpy as np

    img = np.zeros((400, 560, 3), np.uint8)
    img[:] = (40, 200, 40)
    cv2.putText(img, "NOT AN ULTRASOUND", (30, 210), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return img  # RGB


def green_png(path: Path) -> Path:
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(green_picture(), cv2.COLOR_RGB2BGR))
    return path


def green_dicom(path: Path) -> Path:
    from sonoseg.io.us_wrap import UsWrapOptions, wrap_as_us_dicom

    return wrap_as_us_dicom(green_picture(), path, options=UsWrapOptions(seed_uid="green"))

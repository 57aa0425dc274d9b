"""Build the sample DICOMs shipped in src/sonoseg/assets/samples from BUSI test-split images.

Usage: python scripts/make_samples.py ../shared/data/busi busi_split.csv
The images are wrapped by sonoseg itself (Ultrasound Image Storage, anonymous placeholder patient,
deterministic UIDs, RLE lossless). BUSI carries no pixel calibration, so none is invented: the
samples have no SequenceOfUltrasoundRegions spacing and measurements come out in pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
from pydicom import dcmread
from pydicom.uid import RLELossless

from sonoseg.data import read_split_csv
from sonoseg.io.us_wrap import UsWrapOptions, wrap_as_us_dicom

CASES = ["benign (26)", "benign (34)", "malignant (20)"]


def main(busi: str, split_csv: str, out: str = "src/sonoseg/assets/samples") -> None:
    split = read_split_csv(split_csv)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(CASES, 1):
        if split.get(case) != "test":
            raise SystemExit(f"{case} is not in the test split of {split_csv}")
        img = cv2.imread(str(Path(busi) / "images" / f"{case}.png"), cv2.IMREAD_GRAYSCALE)
        name = case.replace(" (", "_").replace(")", "")
        path = wrap_as_us_dicom(img, out_dir / f"sample_{i}_{name}.dcm", options=UsWrapOptions(
            series_description=f"BUSI {case} (test split)", seed_uid=f"sonoseg-sample-{case}", instance_number=i))
        ds = dcmread(path)
        ds.compress(RLELossless, generate_instance_uid=False)  # keep the seeded, reproducible UID
        ds.save_as(path, enforce_file_format=True)
        print(path, path.stat().st_size // 1024, "KiB")


if __name__ == "__main__":
    main(*sys.argv[1:])

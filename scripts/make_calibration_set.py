"""Write the int8 calibration frames that ship with the package (src/sonoseg/assets/calibration/).

They let `sonoseg predict` build (and check) an int8 model of the shipped checkpoint on first use,
on the user's own CPU, with no training data at hand. Frames are BUSI *training-split* images only
(never val/test), drawn per class with a fixed seed, reduced so the longer side is at most 320 px
(the models see 256x256 grids) and stored as 8-bit grayscale PNG.

    python scripts/make_calibration_set.py ../shared/data/busi configs/busi_split.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from sonoseg.data import discover_dataset, read_split_csv

N_PER_CLASS = {"benign": 45, "malignant": 35, "normal": 20}
MAX_SIDE = 256


def main(dataset: str, split_file: str, out: str = "src/sonoseg/assets/calibration") -> None:
    assignment = read_split_csv(split_file)
    samples = [s for s in discover_dataset(dataset) if assignment.get(s.stem) == "train"]
    rng = np.random.default_rng(0)
    classes = {s.cls for s in samples}
    if "normal" not in classes:  # a split without normal images: their share goes to the lesion classes
        N_PER_CLASS.update(benign=56, malignant=44)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob("*.png"), *out_dir.glob("*.jpg")]:
        old.unlink()
    n = 0
    for cls, k in N_PER_CLASS.items():
        pool = sorted((s for s in samples if s.cls == cls), key=lambda s: s.stem)
        for i in sorted(rng.choice(len(pool), size=min(k, len(pool)), replace=False)) if pool else []:
            img = cv2.imread(str(pool[i].image_path), cv2.IMREAD_GRAYSCALE)
            scale = MAX_SIDE / max(img.shape)
            if scale < 1:
                img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                                 interpolation=cv2.INTER_AREA)
            n += 1
            cv2.imwrite(str(out_dir / f"calib_{n:03d}_{cls}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {n} frames to {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Seed 003's noise study on any dataset: how training and/or validating on noisy images changes Dice.

Settings (cells):

- ``baseline``: train clean, validate clean (one cell); scored on the clean test set and on every
  noisy test set (the level sweep of a model that never saw noise);
- ``mixed`` (per noise and level): clean + noisy images in both training and validation;
- ``noisy-val`` (per noise and level): train clean, validate (= pick the best epoch) on clean + noisy.

Noise, with levels in the image's own intensity units (grey values for 8-bit PNGs, raw units for
16-bit; seed 003 used a Gaussian std of 5000 on 16-bit images):

- ``gaussian``: ``I + n``, ``n ~ N(0, level)``;
- ``speckle``: multiplicative ``I * (1 + n)``, ``n ~ N(0, level / full_scale)``, i.e. ``level`` is the
  noise std at a full-scale pixel (255 for 8-bit) and falls in proportion to the intensity.

Noisy copies are written once, deterministically (seeded by image, noise and level), into
``<study>/data/`` next to links to the clean images, with a split CSV that keeps every noisy copy in its
source image's split (``test@gaussian19.1`` for the noisy copy of a test image). Noise augmentation of
the recipe is switched off so "clean" training really is clean.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from sonoseg.errors import ConfigError, InputError
from sonoseg.experiments.options import KINDS, SETTINGS, Noise, NoiseOptions
from sonoseg.experiments.study import (Cell, Study, StudyResult, labelled_assignment, recipe, run_cells, safe_id,
                                       source_split, write_split)
from sonoseg.experiments.tables import (failed_section, fmt_ci, markdown_table, metric_cols, new_figure, save_figure,
                                        write_outputs)

SETTING_TITLES = {"baseline": "clean train, clean val", "mixed": "clean + noisy train and val",
                  "noisy-val": "clean train, clean + noisy val"}
DEFAULT_FRACTIONS = (0.025, 0.075, 0.2)  # of full scale; 0.075 ~ seed 003's 5000 of 65535
LEVEL_UNIT = "std in image intensity units (speckle: at full scale)"


def full_scale(img: np.ndarray) -> float:
    """The intensity range the levels refer to: the integer type's maximum, or the image's own maximum
    for float images (at least 1)."""
    if np.issubdtype(img.dtype, np.integer):
        return float(np.iinfo(img.dtype).max)
    return max(1.0, float(np.nanmax(img)) if img.size else 1.0)


def add_noise(img: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """A noisy copy of ``img`` in its own dtype (clipped to the type's range for integer images)."""
    x = img.astype(np.float64)
    fs = full_scale(img)
    n = rng.standard_normal(x.shape)
    if noise.kind == "gaussian":
        x = x + noise.level * n
    elif noise.kind == "speckle":
        x = x * (1.0 + (noise.level / fs) * n)
    else:
        raise ConfigError(f"unknown noise {noise.kind!r} (noises: {', '.join(KINDS)})")
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(img.dtype)
    return np.clip(x, 0.0, None).astype(img.dtype)


def noise_rng(stem: str, noise: Noise, seed: int = 0) -> np.random.Generator:
    """Same image, noise and level -> same noise, on every machine and rerun."""
    h = hashlib.sha256(f"{seed}|{stem}|{noise.kind}|{noise.level!r}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def default_noises(dataset: Path) -> list[Noise]:
    """Both noises at :data:`DEFAULT_FRACTIONS` of the first image's full scale (e.g. 6.4, 19.1, 51
    grey values for 8-bit images)."""
    from sonoseg.data import discover_dataset
    from sonoseg.io import load_image

    first = next((s for s in discover_dataset(dataset) if s.mask_path is not None), None)
    if first is None:
        raise ConfigError(f"{dataset}: no image/mask pairs found")
    fs = full_scale(load_image(first.image_path).pixels)
    return [Noise(k, float(f"{f * fs:.3g}")) for k in KINDS for f in DEFAULT_FRACTIONS]


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    try:
        os.symlink(os.path.abspath(src), dst)
    except OSError:  # file systems without symlinks
        shutil.copy2(src, dst)


def _write_image(path: Path, img: np.ndarray) -> None:
    import cv2

    if img.ndim == 3 and img.shape[-1] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix, img)
    if not ok:
        raise InputError(path, "could not encode the noisy copy")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def materialise(dataset: Path, assignment: dict[str, str], noises: Sequence[Noise], splits_needed: dict[str, set],
                out: Path, seed: int = 0, log: Callable[[str], None] = print) -> dict[str, str]:
    """Links to the clean images + deterministic noisy copies under ``out`` (images/, masks/, labels.csv);
    returns stem -> role (``train``, ``test@gaussian19.1`` ...). ``splits_needed[tag]``: the source
    splits whose noisy copies some cell uses. Existing copies are kept (a rerun writes nothing new)."""
    import csv

    from sonoseg.data import discover_dataset
    from sonoseg.data.layout import file_stem
    from sonoseg.io import load_image

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    roles: dict[str, str] = {}
    labels = []
    samples = [s for s in discover_dataset(dataset) if s.mask_path is not None and s.stem in assignment]
    written = 0
    for s in samples:
        split = assignment[s.stem]
        _link(s.image_path, out / "images" / s.image_path.name)
        _link(s.mask_path, out / "masks" / s.mask_path.name)
        roles[s.stem] = split
        labels.append((s.image_path.name, s.cls or "", s.group or s.stem))
        todo = [n for n in noises if split in splits_needed.get(n.tag, ())]
        if not todo:
            continue
        img = None
        for n in todo:
            stem = f"{s.stem}__{n.tag}"
            ext = ".png"
            dst = out / "images" / f"{stem}{ext}"
            if not dst.exists():
                if img is None:
                    loaded = load_image(s.image_path)
                    img = loaded.pixels[0] if loaded.is_multiframe else loaded.pixels
                    if img.dtype not in (np.uint8, np.uint16):
                        ext = ".tiff"
                        img = img.astype(np.float32)
                dst = out / "images" / f"{stem}{ext}"
                _write_image(dst, add_noise(img, n, noise_rng(s.stem, n, seed)))
                written += 1
            _link(s.mask_path, out / "masks" / f"{stem}{s.mask_path.name[len(file_stem(s.mask_path)):]}")
            roles[stem] = f"{split}@{n.tag}"
            labels.append((dst.name, s.cls or "", s.group or s.stem))  # a copy stays in its source's patient group
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "class", "group"])
        w.writerows(labels)
    if written:
        log(f"wrote {written} noisy image(s) under {out}")
    return roles


def _needed(settings: Sequence[str], noises: Sequence[Noise]) -> dict[str, set]:
    need: set = set()
    if "baseline" in settings:
        need |= {"test"}
    if "mixed" in settings:
        need |= {"train", "val", "test"}
    if "noisy-val" in settings:
        need |= {"val", "test"}
    return {n.tag: need for n in noises}


def noise_cells(root: Path, roles: dict[str, str], noises: Sequence[Noise], settings: Sequence[str]) -> list[Cell]:
    """One cell per setting (x noise x level for the noisy settings), with its split CSV."""
    master = write_split(sorted(roles.items()), root / "splits" / "all.csv")

    def pick(spec: dict[str, tuple[str, ...]], name: str) -> Path:
        rows = [(stem, new) for stem, role in roles.items() for new, srcs in spec.items() if role in srcs]
        return write_split(sorted(rows), root / "splits" / f"{name}.csv")

    cells: list[Cell] = []
    if "baseline" in settings:
        sp = pick({"train": ("train",), "val": ("val",)}, "baseline")
        evals = {"val": ("val", sp), "test": ("test", master), **{f"test_{n.tag}": (f"test@{n.tag}", master) for n in noises}}
        cells.append(Cell("baseline", {"setting": "baseline"}, sp, evals))
    for n in noises:
        for setting in ("mixed", "noisy-val"):
            if setting not in settings:
                continue
            train = ("train", f"train@{n.tag}") if setting == "mixed" else ("train",)
            cid = safe_id(setting, n.tag)
            sp = pick({"train": train, "val": ("val", f"val@{n.tag}")}, cid)
            evals = {"val": ("val", sp), "test": ("test", master), f"test_{n.tag}": (f"test@{n.tag}", master)}
            cells.append(Cell(cid, {"setting": setting, "noise": n.kind, "level": n.level}, sp, evals))
    return cells


def noise_table(records: list[dict], noises: Sequence[Noise]):
    """One row per (setting, noise, level): val Dice, clean test Dice, noisy test Dice (with CIs)."""
    import pandas as pd

    rows = []
    for r in records:
        setting = r["info"]["setting"]
        mine = noises if setting == "baseline" else [Noise(r["info"]["noise"], r["info"]["level"])]
        for n in mine:
            row = {"setting": setting, "noise": n.kind, "level": n.level, "cell": r["id"], "status": r["status"],
                   "reason": r.get("reason")}
            row.update(metric_cols(r, "val", "val", ("dice", "iou")))
            row.update(metric_cols(r, "test", "test_clean", ("dice", "iou")))
            row.update(metric_cols(r, f"test_{n.tag}", "test_noisy", ("dice", "iou")))
            row["train_seconds"] = (r.get("train") or {}).get("seconds")
            rows.append(row)
    return pd.DataFrame(rows)


def _markdown(df, study: Study, records) -> str:
    head = (f"# Noise study\n\nDataset `{study.dataset}`, budget: {study.budget.describe()}. Levels: {LEVEL_UNIT}. "
            "Dice is the mean over test images with a lesion, with its 95% bootstrap CI (`sonoseg evaluate`).\n\n")
    body = [[f"{r.setting} ({SETTING_TITLES.get(r.setting, r.setting)})", r.noise, f"{r.level:g}",
             fmt_ci(r.val_dice, r.val_dice_lo, r.val_dice_hi), fmt_ci(r.test_clean_dice, r.test_clean_dice_lo, r.test_clean_dice_hi),
             fmt_ci(r.test_noisy_dice, r.test_noisy_dice_lo, r.test_noisy_dice_hi)]
            for r in df.itertuples() if r.status == "ok"]
    table = markdown_table(["setting", "noise", "level", "val Dice", "test Dice (clean)", "test Dice (noisy)"], body,
                           ["l", "l", "r", "r", "r", "r"])
    return head + table + failed_section(records)


def noise_figure(df, path: Path) -> Optional[Path]:
    """Per noise: test Dice on noisy images (solid) and val Dice (dashed) against level, per setting."""
    ok = df[df.status == "ok"] if len(df) else df
    kinds = [k for k in KINDS if len(ok) and k in set(ok.noise)]
    if not kinds:
        return None
    fig, axes = new_figure(len(kinds))
    for ax, kind in zip(axes, kinds):
        sub = ok[ok.noise == kind]
        for k, setting in enumerate(SETTINGS):
            s = sub[sub.setting == setting].sort_values("level")
            if s.empty:
                continue
            color = f"C{k}"
            err = np.clip([s.test_noisy_dice - s.test_noisy_dice_lo, s.test_noisy_dice_hi - s.test_noisy_dice], 0, None)
            ax.errorbar(s.level, s.test_noisy_dice, yerr=np.nan_to_num(err), color=color, marker="o", capsize=3,
                        label=f"{setting}: test (noisy)")
            ax.plot(s.level, s.val_dice, color=color, ls="--", marker="x", label=f"{setting}: val")
        base = sub[sub.setting == "baseline"]
        if not base.empty and base.test_clean_dice.notna().any():
            ax.axhline(float(base.test_clean_dice.iloc[0]), color="grey", ls=":", label="baseline: test (clean)")
        ax.set_title(f"{kind} noise")
        ax.set_xlabel(f"level ({'std' if kind == 'gaussian' else 'std at full scale'}, intensity units)")
        ax.set_ylabel("Dice")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle("; ".join(f"{k} = {v}" for k, v in SETTING_TITLES.items()), fontsize=7)
    return save_figure(fig, path)


def noise_study(dataset: str | Path, out: str | Path, options: Optional[NoiseOptions] = None) -> StudyResult:
    """Run (or resume) the noise study; writes results.csv/.md and noise.png into ``out``."""
    dataset, root, o = Path(dataset), Path(out), options or NoiseOptions()
    parsed = list(o.noises) if o.noises else default_noises(dataset)
    src = source_split(dataset, o.split_file, root)
    assignment = labelled_assignment(dataset, src)
    for need in ("train", "val", "test"):
        if need not in assignment.values():
            raise ConfigError(f"{src}: split {need!r} is empty; the noise study needs train, val and test images")
    roles = materialise(dataset, assignment, parsed, _needed(o.settings, parsed), root / "data", seed=o.seed, log=o.log)
    cells = noise_cells(root, roles, parsed, o.settings)
    for c in cells:
        c.dataset = root / "data"
    study = Study("noise", root, dataset, recipe(o.config, o.log), ["augment.gauss_noise_p=0", "augment.speckle_p=0"], o,
                  params={"noises": [n.tag for n in parsed], "settings": list(o.settings), "split_file": str(src),
                          "level_unit": LEVEL_UNIT, "noise_seed": o.seed})
    records = run_cells(study, cells)
    df = noise_table(records, parsed)
    files = write_outputs(root, "results", df, _markdown(df, study, records))
    fig = noise_figure(df, root / "noise.png")
    if fig:
        files["png"] = fig
    return StudyResult(root, records, df, files)

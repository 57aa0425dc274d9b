"""Leak-free train/val/test splits and k-fold assignments.

The unit that is assigned to a split is the union (union-find) of patient groups from labels.csv and
near-duplicate groups from perceptual hashing, so neither a patient nor a re-saved copy of an image can
end up on both sides. Units are then placed in two passes (random order within a size, from the seed):

1. Units of two or more images, largest first, are spread in proportion to the ratios: each goes to the
   split whose share of the images held in such units, after adding it, is lowest relative to its ratio
   (min over splits of ``(m_b + size) / r_b``; ties by the class score of pass 2). A greedy on class
   counts alone put every multi-image unit into train (train is furthest below its target at first),
   so val/test held only singletons -- images that are never a near-duplicate or a patient's second
   image -- and looked easier than the data. With this rule each split gets about its ratio of them.
2. Single images then go, one by one, to the split that is furthest below its per-class target
   (squared relative error), which evens out the classes that pass 1 left uneven.

This is stratified group splitting; scikit-learn's StratifiedGroupKFold needs one class per group, but
duplicate groups here can mix classes (BUSI files some images under both benign and malignant), so a
small greedy is used. :meth:`SplitResult.group_size_histogram` reports how group sizes ended up.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sonoseg.data.dedup import DEFAULT_DUP_THRESHOLD, UnionFind, find_duplicate_groups
from sonoseg.data.layout import IMAGE_COLUMNS, Sample, natural_key, pick_column, read_csv_records
from sonoseg.errors import ConfigError, InputError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_RATIOS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class SplitRow:
    stem: str
    split: str
    cls: Optional[str]
    group: str  # id of the assigned unit (patient group + duplicate group), e.g. "g0007"
    patient: Optional[str] = None  # group/patient id from labels.csv
    dup_group: Optional[int] = None  # index into SplitResult.duplicate_groups


@dataclass
class SplitResult:
    rows: list[SplitRow]
    duplicate_groups: list[list[str]]  # stems of each near-duplicate group (>= 2 images)
    ratios: tuple[float, ...]
    seed: int
    dup_threshold: int
    names: tuple[str, ...] = SPLIT_NAMES
    n_units: int = 0

    @property
    def n_duplicate_groups(self) -> int:
        return len(self.duplicate_groups)

    @property
    def n_duplicate_images(self) -> int:
        return sum(len(g) for g in self.duplicate_groups)

    @property
    def cross_class_duplicate_groups(self) -> list[list[str]]:
        """Duplicate groups whose images carry different class labels (label noise worth a look)."""
        cls = {r.stem: r.cls for r in self.rows}
        return [g for g in self.duplicate_groups if len({cls[s] for s in g}) > 1]

    def mapping(self) -> dict[str, str]:
        return {r.stem: r.split for r in self.rows}

    def group_size_histogram(self) -> dict[str, Counter]:
        """split -> Counter(group size -> number of independent groups of that size)."""
        sizes: Counter = Counter(r.group for r in self.rows)
        split_of = {r.group: r.split for r in self.rows}
        out: dict[str, Counter] = {n: Counter() for n in self.names}
        for g, k in sizes.items():
            out[split_of[g]][k] += 1
        return out

    def counts(self) -> dict[str, Counter]:
        """split -> Counter(class -> number of images)."""
        out: dict[str, Counter] = {n: Counter() for n in self.names}
        for r in self.rows:
            out[r.split][r.cls] += 1
        return out


@dataclass
class _Units:
    members: list[list[int]]  # sample indices per unit, canonical order
    of_sample: list[int]  # unit index per sample
    dup_of_sample: list[Optional[int]] = field(default_factory=list)
    dup_groups: list[list[int]] = field(default_factory=list)


def _normalise_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    r = tuple(float(x) for x in ratios)
    if len(r) not in (2, 3):
        raise ConfigError(f"ratios: expected 2 or 3 values (train val [test]), got {len(r)}")
    if any(x < 0 for x in r) or sum(r) <= 0 or r[0] <= 0:
        raise ConfigError(f"ratios: must be non-negative with a positive train share, got {list(r)}")
    s = sum(r)
    return tuple(x / s for x in r)


def build_units(samples: Sequence[Sample], dup_groups: Sequence[Sequence[int]]) -> _Units:
    """Union of patient groups and duplicate groups; units ordered by their first stem (natural order),
    so the result does not depend on the order in which samples are given."""
    n = len(samples)
    uf = UnionFind(n)
    first_of_patient: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.group is not None:
            j = first_of_patient.setdefault(s.group, i)
            uf.union(i, j)
    dup_of = [None] * n
    for gi, g in enumerate(dup_groups):
        for i in g:
            dup_of[i] = gi
            uf.union(g[0], i)
    comps = uf.components()
    for c in comps:
        c.sort(key=lambda i: natural_key(samples[i].stem))
    comps.sort(key=lambda c: natural_key(samples[c[0]].stem))
    of = [0] * n
    for u, c in enumerate(comps):
        for i in c:
            of[i] = u
    return _Units(comps, of, dup_of, [list(g) for g in dup_groups])


def _assign(units: list[list[int]], labels: list[str], ratios: Sequence[float], seed: int) -> list[int]:
    """Bucket index per unit: greedy placement that keeps every (bucket, class) count near its target."""
    classes = sorted(set(labels))
    cidx = {c: k for k, c in enumerate(classes)}
    n_cls = np.zeros(len(classes))
    for lab in labels:
        n_cls[cidx[lab]] += 1
    ratios = np.asarray(ratios, dtype=float)
    target = ratios[:, None] * n_cls[None, :]  # bucket x class
    target_tot = ratios * len(labels)
    have = np.zeros_like(target)
    have_tot = np.zeros(len(ratios))
    w = 1.0 / np.maximum(n_cls, 1.0)  # per-class relative error, so small classes count as much
    vecs = []
    for members in units:
        v = np.zeros(len(classes))
        for i in members:
            v[cidx[labels[i]]] += 1
        vecs.append(v)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(units))
    order = sorted(order, key=lambda u: -len(units[u]))  # stable: random order within a size
    out = [0] * len(units)
    open_buckets = ratios > 0
    multi = np.zeros(len(ratios))  # images held in units of >= 2 images, per bucket
    for u in order:
        v, size = vecs[u], len(units[u])
        # increase of sum_c w_c (have - target)^2 + (tot - target_tot)^2 / N when adding the unit
        delta = (v[None, :] * (2 * (have - target) + v[None, :]) * w[None, :]).sum(1)
        delta += size * (2 * (have_tot - target_tot) + size) / max(len(labels), 1)
        delta[~open_buckets] = np.inf
        if size >= 2:  # pass 1: proportional spread of multi-image units (module docstring)
            fill = np.where(open_buckets, (multi + size) / np.where(open_buckets, ratios, 1.0), np.inf)
            best = np.isclose(fill, fill.min())
            delta = np.where(best, delta, np.inf)
            multi[int(np.argmin(delta))] += size
        b = int(np.argmin(delta))
        out[u] = b
        have[b] += v
        have_tot[b] += size
    return out


def _labels(samples: Sequence[Sample]) -> list[str]:
    return [s.cls if s.cls is not None else "" for s in samples]


def _dup_groups_for(samples, dup_threshold, dup_groups, hashes, cache_dir) -> list[list[int]]:
    if dup_groups is not None:
        return [sorted(g) for g in dup_groups if len(g) > 1]
    return find_duplicate_groups([s.image_path for s in samples], dup_threshold, cache_dir=cache_dir, hashes=hashes)


def make_split(
    samples: Sequence[Sample],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    dup_threshold: int = DEFAULT_DUP_THRESHOLD,
    dup_groups: Optional[Sequence[Sequence[int]]] = None,
    hashes: Optional[np.ndarray] = None,
    cache_dir: Optional[str | Path] = None,
) -> SplitResult:
    """Stratified (class), grouped (patient), duplicate-aware split; deterministic for a seed.

    ``dup_groups`` (indices) or ``hashes`` skip the hashing; ``dup_threshold < 0`` disables it."""
    if not samples:
        raise ConfigError("cannot split an empty dataset")
    stems = [s.stem for s in samples]
    if len(set(stems)) != len(stems):
        raise ConfigError("sample stems are not unique")
    r = _normalise_ratios(ratios)
    names = SPLIT_NAMES[: len(r)]
    groups = _dup_groups_for(samples, dup_threshold, dup_groups, hashes, cache_dir)
    units = build_units(samples, groups)
    bucket = _assign(units.members, _labels(samples), r, seed)
    rows = [
        SplitRow(
            stem=s.stem,
            split=names[bucket[units.of_sample[i]]],
            cls=s.cls,
            group=f"g{units.of_sample[i]:04d}",
            patient=s.group,
            dup_group=units.dup_of_sample[i],
        )
        for i, s in enumerate(samples)
    ]
    dup_stems = [[samples[i].stem for i in g] for g in groups]
    return SplitResult(rows, dup_stems, r, seed, dup_threshold, names, len(units.members))


def make_kfold(
    samples: Sequence[Sample],
    k: int = 5,
    seed: int = 0,
    dup_threshold: int = DEFAULT_DUP_THRESHOLD,
    dup_groups: Optional[Sequence[Sequence[int]]] = None,
    hashes: Optional[np.ndarray] = None,
    cache_dir: Optional[str | Path] = None,
) -> list[int]:
    """Fold index (0..k-1) per sample: stratified, grouped and duplicate-aware like :func:`make_split`."""
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}")
    groups = _dup_groups_for(samples, dup_threshold, dup_groups, hashes, cache_dir)
    units = build_units(samples, groups)
    if k > len(units.members):
        raise ConfigError(f"k={k} folds but only {len(units.members)} independent groups of images")
    bucket = _assign(units.members, _labels(samples), [1.0 / k] * k, seed)
    return [bucket[units.of_sample[i]] for i in range(len(samples))]


SPLIT_COLUMNS = ("image", "split", "class", "group", "patient", "dup_group")


def write_split_csv(result: SplitResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SPLIT_COLUMNS)
        for r in result.rows:
            w.writerow([r.stem, r.split, r.cls or "", r.group, r.patient or "", "" if r.dup_group is None else r.dup_group])
    return path


def read_split_csv(path: str | Path) -> dict[str, str]:
    """stem -> split name. Needs an image column (image/case/stem/name...) and a ``split`` column."""
    path = Path(path)
    header, records = read_csv_records(path, "split file")
    img_col = pick_column(header, IMAGE_COLUMNS)
    split_col = pick_column(header, ("split", "subset", "fold"))
    if img_col is None or split_col is None:
        raise InputError(path, f"split file needs 'image' and 'split' columns, found {', '.join(header) or 'none'}")
    out: dict[str, str] = {}
    for n, rec in enumerate(records, start=2):
        stem = (rec.get(img_col) or "").strip()
        split = (rec.get(split_col) or "").strip()
        if not stem or not split:
            raise InputError(path, f"line {n}: empty image or split value")
        if stem in out and out[stem] != split:
            raise InputError(path, f"line {n}: {stem!r} is listed in both {out[stem]!r} and {split!r}")
        out[stem] = split
    return out


def select_split(samples: Sequence[Sample], split_map: dict[str, str], name: str) -> list[Sample]:
    """Samples whose stem is assigned to ``name``; ConfigError if none are (wrong file or name)."""
    chosen = [s for s in samples if split_map.get(s.stem) == name]
    if not chosen:
        known = ", ".join(sorted(set(split_map.values()))) or "none"
        raise ConfigError(f"no images of this dataset are in split {name!r} (splits in file: {known})")
    return chosen

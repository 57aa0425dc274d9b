"""Splits and k-folds: grouping, duplicate awareness, stratification, determinism; near-duplicate
detection on phantoms; hash cache; the ``sonoseg split`` CLI."""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from sonoseg.data import dedup
from sonoseg.data.dedup import duplicate_pairs, find_duplicate_groups, groups_from_pairs, image_hashes
from sonoseg.data.layout import Sample, discover_dataset
from sonoseg.data.split import make_kfold, make_split, read_split_csv, select_split, write_split_csv
from sonoseg.errors import ConfigError, InputError


# ---------------------------------------------------------------- synthetic sample lists (no pixels)


def _samples(n=400, seed=0, patients=120, minority=0.3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cls = "malignant" if rng.random() < minority else "benign"
        group = f"p{rng.randrange(patients)}" if i % 3 else None  # a third without patient id
        out.append(Sample(f"case {i}", Path(f"/nowhere/case {i}.png"), None, cls, group))
    return out


def _dup_groups(n, seed=1, count=25):
    rng = random.Random(seed)
    idx = list(range(n))
    rng.shuffle(idx)
    groups, k = [], 0
    for _ in range(count):
        size = rng.choice([2, 2, 3, 4])
        groups.append(sorted(idx[k : k + size]))
        k += size
    return groups


def _units_from_scratch(samples, groups):
    """Independent union of patient ids and duplicate groups (plain graph search)."""
    adj = defaultdict(set)
    by_patient = defaultdict(list)
    for i, s in enumerate(samples):
        if s.group is not None:
            by_patient[s.group].append(i)
    for members in list(by_patient.values()) + [list(g) for g in groups]:
        for a in members:
            for b in members:
                adj[a].add(b)
    seen, comps = set(), []
    for i in range(len(samples)):
        if i in seen:
            continue
        stack, comp = [i], set()
        while stack:
            j = stack.pop()
            if j in comp:
                continue
            comp.add(j)
            stack.extend(adj[j] - comp)
        seen |= comp
        comps.append(comp)
    return comps


def test_no_patient_or_duplicate_group_straddles_splits():
    samples = _samples()
    groups = _dup_groups(len(samples))
    res = make_split(samples, seed=3, dup_groups=groups)
    split = [r.split for r in res.rows]
    comps = _units_from_scratch(samples, groups)
    for comp in comps:
        assert len({split[i] for i in comp}) == 1
    # the CSV 'group' column is exactly that partition
    by_group = defaultdict(set)
    for i, r in enumerate(res.rows):
        by_group[r.group].add(i)
    assert sorted(map(sorted, by_group.values())) == sorted(map(sorted, comps))
    assert res.n_units == len(comps)
    assert res.n_duplicate_groups == len(groups)
    assert res.n_duplicate_images == sum(len(g) for g in groups)


def test_ratios_and_stratification():
    samples = _samples(n=600, patients=300)
    res = make_split(samples, ratios=(0.7, 0.15, 0.15), seed=0, dup_groups=_dup_groups(600))
    counts = res.counts()
    n_cls = Counter(s.cls for s in samples)
    for name, share in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        total = sum(counts[name].values())
        assert abs(total / 600 - share) < 0.02, (name, total)
        for cls, n in n_cls.items():
            assert abs(counts[name][cls] / n - share) < 0.04, (name, cls, counts[name][cls], n)


def test_multi_image_groups_spread_in_proportion():
    """Issue 9: 40 pairs + 20 triples among 400 singletons; each split gets about its ratio of them
    (the old class-only greedy put all 60 in train), and the histogram counts them independently."""
    rng = random.Random(3)
    n = 520
    samples = [Sample(f"c{i}", Path(f"/nowhere/c{i}.png"), None, "m" if rng.random() < 0.3 else "b") for i in range(n)]
    groups = [[2 * k, 2 * k + 1] for k in range(40)] + [[80 + 3 * k, 81 + 3 * k, 82 + 3 * k] for k in range(20)]
    res = make_split(samples, seed=0, dup_groups=groups)
    split = res.mapping()
    hist = res.group_size_histogram()
    for size, members in ((2, groups[:40]), (3, groups[40:])):
        per = Counter(split[f"c{g[0]}"] for g in members)
        assert {k: hist[k][size] for k in res.names} == {k: per.get(k, 0) for k in res.names}
    multi_imgs = Counter(split[f"c{i}"] for g in groups for i in g)  # 140 images in multi-image groups
    for name, share in zip(res.names, (0.7, 0.15, 0.15)):
        assert abs(multi_imgs[name] - share * 140) <= 4, (name, multi_imgs)
    assert sum(hist[k][1] for k in res.names) == n - 140
    counts = res.counts()  # class balance still holds
    for name, share in zip(res.names, (0.7, 0.15, 0.15)):
        for cls in ("b", "m"):
            k = sum(1 for s_ in samples if s_.cls == cls)
            assert abs(counts[name][cls] / k - share) < 0.03, (name, cls)


def test_two_way_split_and_unnormalised_ratios():
    samples = _samples(n=200, patients=200)
    res = make_split(samples, ratios=(8, 2), seed=0, dup_threshold=-1, dup_groups=[])
    assert res.names == ("train", "val")
    c = Counter(r.split for r in res.rows)
    assert set(c) == {"train", "val"} and abs(c["val"] - 40) <= 2


def test_deterministic_per_seed_and_seeds_differ():
    samples = _samples()
    groups = _dup_groups(len(samples))
    a = make_split(samples, seed=7, dup_groups=groups).mapping()
    b = make_split(samples, seed=7, dup_groups=groups).mapping()
    c = make_split(samples, seed=8, dup_groups=groups).mapping()
    assert a == b
    assert sum(a[k] != c[k] for k in a) > 20


def test_split_independent_of_input_order():
    samples = _samples(n=150)
    groups = _dup_groups(150, count=10)
    res = make_split(samples, seed=2, dup_groups=groups)
    perm = list(range(150))
    random.Random(5).shuffle(perm)
    inv = {old: new for new, old in enumerate(perm)}
    shuffled = [samples[i] for i in perm]
    res2 = make_split(shuffled, seed=2, dup_groups=[[inv[i] for i in g] for g in groups])
    assert res.mapping() == res2.mapping()


def test_cross_class_duplicates_reported():
    samples = [Sample(f"s{i}", Path(f"/x/s{i}.png"), None, "a" if i < 5 else "b") for i in range(10)]
    res = make_split(samples, seed=0, dup_groups=[[0, 7], [1, 2]])
    assert res.cross_class_duplicate_groups == [["s0", "s7"]]


def test_bad_ratios_rejected():
    samples = _samples(n=20)
    for bad in [(0.5, 0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (0.7, -0.1, 0.4)]:
        with pytest.raises(ConfigError):
            make_split(samples, ratios=bad, dup_groups=[])


def test_kfold_grouped_stratified_deterministic():
    samples = _samples(n=500, patients=250)
    groups = _dup_groups(500)
    folds = make_kfold(samples, k=5, seed=1, dup_groups=groups)
    assert len(folds) == 500 and set(folds) == set(range(5))
    for comp in _units_from_scratch(samples, groups):
        assert len({folds[i] for i in comp}) == 1
    n_cls = Counter(s.cls for s in samples)
    per = Counter(zip(folds, (s.cls for s in samples)))
    for f in range(5):
        for cls, n in n_cls.items():
            assert abs(per[(f, cls)] - n / 5) <= max(4, 0.1 * n / 5), (f, cls, per[(f, cls)])
    assert folds == make_kfold(samples, k=5, seed=1, dup_groups=groups)
    assert folds != make_kfold(samples, k=5, seed=2, dup_groups=groups)
    with pytest.raises(ConfigError):
        make_kfold(samples[:3], k=5, dup_groups=[])


def test_split_csv_round_trip_and_select(tmp_path):
    samples = _samples(n=60)
    res = make_split(samples, seed=0, dup_groups=[[0, 1]])
    path = write_split_csv(res, tmp_path / "s" / "split.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"image", "split", "group", "class"} <= set(rows[0])
    assert rows[0]["dup_group"] == "0" and rows[1]["dup_group"] == "0" and rows[0]["group"] == rows[1]["group"]
    mapping = read_split_csv(path)
    assert mapping == res.mapping()
    val = select_split(samples, mapping, "val")
    assert [s.stem for s in val] == [r.stem for r in res.rows if r.split == "val"]
    with pytest.raises(ConfigError):
        select_split(samples, mapping, "holdout")


def test_read_split_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,fold_x\na,train\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_split_csv(bad)
    conflict = tmp_path / "conflict.csv"
    conflict.write_text("image,split\na,train\na,test\n")
    with pytest.raises(InputError, match="both"):
        read_split_csv(conflict)
    with pytest.raises(InputError):
        read_split_csv(tmp_path / "missing.csv")


# ---------------------------------------------------------------- near-duplicates on real pixels


def _phantom_images(n: int, seed: int, size: int = 128, sector: bool = False) -> list[np.ndarray]:
    """Distinct phantoms from the project's generator (same layout, different tissue and lesions)."""
    import tempfile

    from sonoseg.data.phantom import write_phantom_dataset

    with tempfile.TemporaryDirectory() as d:
        write_phantom_dataset(Path(d), n=n, size=(size, size), seed=seed, sector=sector)
        files = sorted((Path(d) / "images").iterdir())
        imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files]
    assert len(imgs) == n and all(im is not None for im in imgs)
    return imgs


@pytest.fixture(scope="module")
def dup_folder(tmp_path_factory):
    """12 distinct phantoms + 3 altered copies of phantom 0, 4 and 8."""
    root = tmp_path_factory.mktemp("dups")
    imgs = _phantom_images(12, seed=11)
    paths = []
    for i, im in enumerate(imgs):
        p = root / f"p{i:02d}.png"
        cv2.imwrite(str(p), im)
        paths.append(p)
    # JPEG re-encode
    ok, buf = cv2.imencode(".jpg", imgs[0], [cv2.IMWRITE_JPEG_QUALITY, 80])
    (root / "copy_jpeg.jpg").write_bytes(buf.tobytes())
    # brightness shift
    cv2.imwrite(str(root / "copy_bright.png"), np.clip(imgs[4].astype(int) + 20, 0, 255).astype(np.uint8))
    # resized (and hence resampled) copy
    h, w = imgs[8].shape
    cv2.imwrite(str(root / "copy_small.png"), cv2.resize(imgs[8], (int(w * 0.75), int(h * 0.75)), interpolation=cv2.INTER_AREA))
    paths += [root / "copy_jpeg.jpg", root / "copy_bright.png", root / "copy_small.png"]
    return paths


def test_near_duplicates_found_and_distinct_phantoms_kept_apart(dup_folder, tmp_path):
    groups = find_duplicate_groups(dup_folder, cache_dir=tmp_path)
    assert sorted(groups) == [[0, 12], [4, 13], [8, 14]]
    assert find_duplicate_groups(dup_folder, threshold=-1, cache_dir=tmp_path) == []


def test_hash_distances_match_imagehash(dup_folder, tmp_path):
    import imagehash
    from PIL import Image

    h = image_hashes(dup_folder[:3], cache_dir=tmp_path)
    for row, p in zip(h, dup_folder[:3]):
        im = Image.open(p).convert("L")
        assert int(row[0]) == int(str(imagehash.phash(im)), 16)
        assert int(row[1]) == int(str(imagehash.dhash(im)), 16)


def test_hash_cache_hit_and_invalidation(dup_folder, tmp_path, monkeypatch):
    src = dup_folder[:4]
    work = []
    for p in src:
        q = tmp_path / "imgs" / p.name
        q.parent.mkdir(exist_ok=True)
        q.write_bytes(p.read_bytes())
        work.append(q)
    first = image_hashes(work, cache_dir=tmp_path / "cache")
    calls = []
    real = dedup._hash_file
    monkeypatch.setattr(dedup, "_hash_file", lambda p: calls.append(p) or real(p))
    again = image_hashes(work, cache_dir=tmp_path / "cache")
    assert calls == [] and np.array_equal(first, again)
    # a changed file is re-hashed (new content, new mtime/size)
    cv2.imwrite(str(work[1]), 255 - cv2.imread(str(work[1]), cv2.IMREAD_GRAYSCALE))
    third = image_hashes(work, cache_dir=tmp_path / "cache")
    assert calls == [work[1]]
    assert np.array_equal(third[[0, 2, 3]], first[[0, 2, 3]]) and not np.array_equal(third[1], first[1])


def test_duplicate_pairs_blockwise_equals_bruteforce():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(50, 2), dtype=np.uint64)
    # plant near copies: flip few bits
    planted = base.copy()
    planted[:10] ^= np.uint64(0b1011)
    hashes = np.concatenate([base, planted[:10]])
    got = set(duplicate_pairs(hashes, threshold=3, block=7))
    brute = set()
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            dp = bin(int(hashes[i, 0]) ^ int(hashes[j, 0])).count("1")
            dd = bin(int(hashes[i, 1]) ^ int(hashes[j, 1])).count("1")
            if dp <= 3 and dd <= 3:
                brute.add((i, j))
    assert got == brute and {(i, 50 + i) for i in range(10)} <= got
    assert groups_from_pairs(5, [(0, 1), (1, 2), (3, 4)]) == [[0, 1, 2], [3, 4]]


# ---------------------------------------------------------------- CLI


def _write_dataset(root: Path, imgs: list[np.ndarray], classes: list[str], patients: list[str | None]):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["Image,Label,Patient_ID"]
    for i, (im, c, p) in enumerate(zip(imgs, classes, patients)):
        cv2.imwrite(str(root / "images" / f"img{i}.png"), im)
        m = np.zeros(im.shape[:2], np.uint8)
        m[10:30, 10:30] = 255
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), m)
        rows.append(f"img{i}.png,{c},{p or ''}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_cli_split_writes_csv(tmp_path, monkeypatch):
    from sonoseg.cli.main import app

    monkeypatch.setenv("SONOSEG_CACHE_DIR", str(tmp_path / "cache"))
    imgs = _phantom_images(20, seed=5, size=96)
    imgs.append(np.clip(imgs[3].astype(int) + 10, 0, 255).astype(np.uint8))  # img20 ~ img3
    classes = ["benign" if i % 3 else "malignant" for i in range(21)]
    patients = [None] * 21
    patients[5] = patients[6] = "P1"
    _write_dataset(tmp_path / "ds", imgs, classes, patients)
    out = tmp_path / "split.csv"
    res = CliRunner().invoke(app, ["split", str(tmp_path / "ds"), "--out", str(out), "--seed", "4", "--ratios", "0.6", "0.2", "0.2", "--show-duplicates"])
    assert res.exit_code == 0, res.output
    assert "1 groups containing 2 images" in res.output
    assert "groups per split by size" in res.output  # the histogram table (issue 9)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 21
    assert {"image", "split", "group", "class"} <= set(rows[0])
    by = {r["image"]: r for r in rows}
    assert by["img3"]["split"] == by["img20"]["split"] and by["img3"]["group"] == by["img20"]["group"]
    assert by["img5"]["split"] == by["img6"]["split"] and by["img5"]["patient"] == "P1"
    assert by["img0"]["class"] == "malignant"
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    # same seed -> same file; the library call agrees with the CLI
    lib = make_split(discover_dataset(tmp_path / "ds"), ratios=(0.6, 0.2, 0.2), seed=4, cache_dir=tmp_path / "cache")
    assert lib.mapping() == read_split_csv(out)


def test_cli_split_missing_dataset(tmp_path):
    from sonoseg.cli.main import app

    res = CliRunner().invoke(app, ["split", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2
    assert not (tmp_path / "s.csv").exists()


def test_layout_warning_for_shared_sector_layout(tmp_path):
    """Distinct sector-fan phantoms with burnt-in UI hash alike; plain phantoms do not."""
    from sonoseg.data.dedup import close_pair_distance, layout_warning
    from sonoseg.data.phantom import write_phantom_dataset

    plain = write_phantom_dataset(tmp_path / "plain", n=24, size=(96, 96), seed=1)
    fan = write_phantom_dataset(tmp_path / "fan", n=24, size=(96, 96), seed=1, sector=True, ui_overlay=True)
    h_plain = image_hashes(sorted((plain / "images").iterdir()), cache_dir=tmp_path / "c")
    h_fan = image_hashes(sorted((fan / "images").iterdir()), cache_dir=tmp_path / "c")
    assert layout_warning(h_plain, 12) is None
    msg = layout_warning(h_fan, 12)
    assert msg is not None and "--dup-threshold" in msg
    assert close_pair_distance(h_fan) < close_pair_distance(h_plain)
    assert close_pair_distance(h_fan[:10]) is None  # too few images to judge

"""Near-duplicate images by perceptual hashing (imagehash pHash + dHash, 64 bits each).

Two images are near-duplicates when BOTH hashes are within ``threshold`` bits (Hamming distance);
groups are the connected components of that relation (union-find), so A~B and B~C puts A, B, C
together. Requiring both hashes keeps false merges rare: pHash (DCT) tolerates re-encoding, brightness
shifts and resizing; dHash (gradient signs) disagrees on images that only share a coarse layout.

The default threshold (12 of 64 bits) was chosen on BUSI by eye (see ``DEFAULT_DUP_THRESHOLD``). Images
that share a layout (sector fan, burnt-in UI) hash alike even when distinct: :func:`layout_warning`
detects that from the dataset's own distance distribution.
Hashes are cached per file (path, size, mtime) under the dataset-independent cache dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from sonoseg.data.cache import atomic_write_json, default_cache_dir, read_json, stable_key

# Chosen on BUSI (647 lesion images; still holds for the 780 with normal) by looking at pairs side by side: every pair with both distances <= 14
# was the same scan (re-cropped, re-annotated, the next frame of a sweep; six groups are filed under
# both benign and malignant); the first distinct pairs appear at 15-16 and their number grows fast
# with distance (and with dataset size, as n^2). 12 keeps a margin: at 14 BUSI gains only 3 images.
DEFAULT_DUP_THRESHOLD = 12
HASH_VERSION = "phash8+dhash8/v1"

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class UnionFind:
    """Disjoint sets over 0..n-1 (path halving + union by size)."""

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def components(self) -> list[list[int]]:
        """All sets (singletons included), each sorted, ordered by smallest member."""
        by_root: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            by_root.setdefault(self.find(i), []).append(i)
        return sorted(by_root.values(), key=lambda g: g[0])


def _to_gray_u8(pixels: np.ndarray) -> np.ndarray:
    """Any decoded image (HxW, HxWxC, frames x H x W[xC]) -> one 2-D uint8 frame for hashing."""
    a = np.asarray(pixels)
    a = a.reshape([s for s in a.shape if s != 1] or [1, 1]) if a.ndim > 2 else a
    if a.ndim == 4:  # frames, H, W, C
        a = a[0]
    if a.ndim == 3:
        if a.shape[-1] in (3, 4):
            luma = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            a = np.clip(np.round(luma), 0, 255).astype(np.uint8) if a.dtype == np.uint8 else luma
        else:  # frames first
            a = a[0]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return a


def hash_pixels(pixels: np.ndarray) -> tuple[int, int]:
    """(pHash, dHash) of an image array as 64-bit integers."""
    import imagehash
    from PIL import Image

    im = Image.fromarray(_to_gray_u8(pixels))
    return int(str(imagehash.phash(im)), 16), int(str(imagehash.dhash(im)), 16)


def _hash_file(path: Path) -> tuple[int, int]:
    from sonoseg.io import load_image

    return hash_pixels(load_image(path).pixels)


def image_hashes(
    paths: Sequence[str | Path],
    cache_dir: Optional[str | Path] = None,
    use_cache: bool = True,
    on_progress: Optional[Callable[[int], None]] = None,
) -> np.ndarray:
    """(n, 2) uint64 array of (pHash, dHash). Unreadable files raise InputError (from sonoseg.io).

    The cache is one JSON file per image folder: ``<cache>/hashes/<key of folder>.json`` mapping
    file name -> [size, mtime_ns, phash, dhash]; a changed file is simply re-hashed."""
    paths = [Path(p) for p in paths]
    out = np.zeros((len(paths), 2), dtype=np.uint64)
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tables: dict[Path, dict] = {}
    dirty: set[Path] = set()
    for i, p in enumerate(paths):
        folder = p.resolve().parent
        st = p.stat()
        entry = None
        if use_cache:
            if folder not in tables:
                loaded = read_json(base / "hashes" / f"{stable_key(str(folder), HASH_VERSION)}.json")
                tables[folder] = loaded if isinstance(loaded, dict) else {}
            entry = tables[folder].get(p.name)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            ph, dh = int(entry[2], 16), int(entry[3], 16)
        else:
            ph, dh = _hash_file(p)
            if use_cache:
                tables[folder][p.name] = [st.st_size, st.st_mtime_ns, f"{ph:016x}", f"{dh:016x}"]
                dirty.add(folder)
        out[i] = (ph, dh)
        if on_progress:
            on_progress(i + 1)
    for folder in dirty:
        try:
            atomic_write_json(base / "hashes" / f"{stable_key(str(folder), HASH_VERSION)}.json", tables[folder])
        except OSError:
            pass  # a read-only cache dir costs speed, not correctness
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int32)
    return _POP8[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1).astype(np.int32)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two 1-D uint64 hash arrays."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    b = np.ascontiguousarray(b, dtype=np.uint64)
    return _popcount(a[:, None] ^ b[None, :])


def duplicate_pairs(hashes: np.ndarray, threshold: int, block: int = 1024) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose pHash AND dHash distances are both <= threshold."""
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1, 2)
    n = len(hashes)
    if threshold < 0 or n < 2:
        return []
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, block):  # blocks keep memory at block x n for large datasets
        stop = min(start + block, n)
        close = (hamming_matrix(hashes[start:stop, 0], hashes[:, 0]) <= threshold) & (
            hamming_matrix(hashes[start:stop, 1], hashes[:, 1]) <= threshold
        )
        for r, c in zip(*np.nonzero(close)):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c)))
    return pairs


def close_pair_distance(hashes: np.ndarray, quantile: float = 0.01, max_images: int = 2000, seed: int = 0) -> Optional[float]:
    """The ``quantile`` of max(pHash, dHash) distance over all image pairs (on a seeded subsample of
    ``max_images`` for big datasets); None for fewer than 20 images.

    Duplicates are a tiny fraction of pairs, so this measures how alike *distinct* images are. Images
    with a shared layout (sector fan, burnt-in UI) hash alike: with this below ~1.5x the threshold,
    detection would start merging distinct images."""
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1, 2)
    if len(hashes) < 20:
        return None
    if len(hashes) > max_images:
        hashes = hashes[np.sort(np.random.default_rng(seed).choice(len(hashes), max_images, replace=False))]
    d = np.maximum(hamming_matrix(hashes[:, 0], hashes[:, 0]), hamming_matrix(hashes[:, 1], hashes[:, 1]))
    return float(np.quantile(d[np.triu_indices(len(hashes), 1)], quantile))


def layout_warning(hashes: np.ndarray, threshold: int) -> Optional[str]:
    """A one-line warning when distinct images of this dataset are too alike for ``threshold``."""
    q = close_pair_distance(hashes)
    if q is None or threshold < 0 or q > 1.5 * threshold:
        return None
    return (
        f"1% of all image pairs differ by <= {q:g} bits (shared layout such as a sector fan or UI?); "
        f"threshold {threshold} may merge distinct images, consider --dup-threshold {max(int(q // 2), 0)}"
    )


def groups_from_pairs(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components with at least two members, each sorted, ordered by first member."""
    uf = UnionFind(n)
    for i, j in pairs:
        uf.union(i, j)
    return [g for g in uf.components() if len(g) > 1]


def find_duplicate_groups(
    paths: Sequence[str | Path],
    threshold: int = DEFAULT_DUP_THRESHOLD,
    cache_dir: Optional[str | Path] = None,
    hashes: Optional[np.ndarray] = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Groups (indices into ``paths``) of near-identical images; singletons are omitted.
    ``threshold < 0`` disables detection. Pass ``hashes`` from :func:`image_hashes` to skip hashing."""
    if threshold < 0:
        return []
    if hashes is None:
        hashes = image_hashes(paths, cache_dir=cache_dir, use_cache=use_cache)
    return groups_from_pairs(len(paths), duplicate_pairs(hashes, threshold))

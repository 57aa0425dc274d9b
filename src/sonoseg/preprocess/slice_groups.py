"""Seed 002's fixed-size slice groups: a volume of any slice count becomes groups of exactly ``size``
slices (stride ``size - overlap``; the last group ends at the last slice; a volume shorter than one
group is zero-padded), so patients with different slice counts train in one batch without resizing
away slices. :func:`reassemble` is the exact inverse: every slice is taken from the one group whose
centre is nearest (ties to the earlier group), so nothing is averaged and the original comes back
bit for bit; applied to per-group predictions it keeps the group edges out of the result.
"""

from __future__ import annotations

import numpy as np


def group_starts(n: int, size: int, overlap: int = 0) -> list[int]:
    """First slice of each group covering 0..n-1."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    if n <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def split_groups(volume: np.ndarray, size: int, overlap: int = 0, axis: int = -1) -> list[np.ndarray]:
    """Groups of exactly ``size`` slices along ``axis`` (copies; zero-padded when the volume is shorter)."""
    v = np.moveaxis(np.asarray(volume), axis, 0)
    n = v.shape[0]
    out = []
    for s in group_starts(n, size, overlap):
        g = v[s: s + size]
        if g.shape[0] < size:
            g = np.concatenate([g, np.zeros((size - g.shape[0],) + g.shape[1:], g.dtype)])
        out.append(np.moveaxis(g.copy(), 0, axis))
    return out


def owner_of_slices(n: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """For each slice z: (group index, slice index inside that group), nearest group centre wins."""
    starts = group_starts(n, size, overlap)
    centres = np.array([s + (min(size, n) - 1) / 2.0 for s in starts])
    out = []
    for z in range(n):
        inside = [k for k, s in enumerate(starts) if s <= z < s + size]
        k = min(inside, key=lambda k: (abs(z - centres[k]), k))
        out.append((k, z - starts[k]))
    return out


def reassemble(groups: list[np.ndarray], n: int, size: int, overlap: int = 0, axis: int = -1) -> np.ndarray:
    """Inverse of :func:`split_groups` for a volume of ``n`` slices (groups may have extra leading
    channel axes, ``axis`` counts from the end)."""
    moved = [np.moveaxis(np.asarray(g), axis, 0) for g in groups]
    expected = len(group_starts(n, size, overlap))
    if len(moved) != expected:
        raise ValueError(f"{len(moved)} groups given, {expected} expected for {n} slices")
    out = np.empty((n,) + moved[0].shape[1:], moved[0].dtype)
    for z, (k, i) in enumerate(owner_of_slices(n, size, overlap)):
        out[z] = moved[k][i]
    return np.moveaxis(out, 0, axis)

"""Compiled building blocks of the level sweeps in :mod:`camlab.metrics.maxtree`.

Images are handled padded with a one-pixel ring: pixel (y, x) of an [H, W] map is index
q = (y + 1) * (W + 2) + (x + 1), so every neighbour of a real pixel is a valid index and the
sweeps need no bounds checks (ring pixels are simply never added as foreground).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def grouped_pixels(keys: np.ndarray, h: int, w: int):
    """Counting sort of the real pixels of a padded uint8 key map by key.

    Args:
        keys: uint8 array [(H + 2) * (W + 2)] (ring entries ignored).
        h, w: map size.

    Returns:
        ``order`` int32 [H * W] of padded indices, raster order within a key; ``starts`` int64
        [257] (key k is ``order[starts[k]:starts[k + 1]]``); ``ys``, ``xs`` int32 [H * W], the
        row and column of each entry of ``order`` (no division in the sweeps).
    """
    wp = w + 2
    starts = np.zeros(257, np.int64)
    for y in range(h):
        row = (y + 1) * wp + 1
        for x in range(w):
            starts[keys[row + x] + 1] += 1
    for k in range(256):
        starts[k + 1] += starts[k]
    fill = starts[:256].copy()
    order = np.empty(h * w, np.int32)
    ys = np.empty(h * w, np.int32)
    xs = np.empty(h * w, np.int32)
    for y in range(h):
        row = (y + 1) * wp + 1
        for x in range(w):
            k = keys[row + x]
            i = fill[k]
            order[i], ys[i], xs[i] = row + x, y, x
            fill[k] = i + 1
    return order, starts, ys, xs


def ring_groups() -> tuple[np.ndarray, np.ndarray]:
    """For every 8-bit pattern of already-added 8-neighbours, one neighbour per group of them.

    Ring positions 0..7 are N, NE, E, SE, S, SW, W, NW (:func:`ring_offsets`). Added neighbours
    that are 8-adjacent to each other are already in one set, so the sweep only needs a find
    per group: ring neighbours are adjacent, and so are two edge neighbours around a corner.

    Returns:
        ``reps`` int64 [256, 4] (first ``counts[m]`` entries used) and ``counts`` int64 [256].
    """
    reps = np.zeros((256, 4), np.int64)
    counts = np.zeros(256, np.int64)
    for mask in range(256):
        on = [i for i in range(8) if mask >> i & 1]
        group = {i: i for i in on}
        for i in on:
            for j in on:
                step = (j - i) % 8
                if step == 1 or (step == 2 and i % 2 == 0):
                    old, new = group[j], group[i]
                    group = {k: new if g == old else g for k, g in group.items()}
        firsts = sorted({g: k for k, g in sorted(group.items(), reverse=True)}.values())
        counts[mask] = len(firsts)
        reps[mask, : len(firsts)] = firsts
    return reps, counts


@numba.njit(cache=True, nogil=True)
def ring_offsets(w: int) -> np.ndarray:
    """Padded-index offsets of the 8 neighbours N, NE, E, SE, S, SW, W, NW (row width w + 2)."""
    wp = w + 2
    return np.array([-wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1, -wp - 1])


@numba.njit(cache=True, nogil=True)
def padded(s8: np.ndarray) -> np.ndarray:
    """uint8 map [H, W] -> flat padded copy [(H + 2) * (W + 2)] with a zero ring."""
    h, w = s8.shape
    out = np.zeros((h + 2) * (w + 2), np.uint8)
    for y in range(h):
        row = (y + 1) * (w + 2) + 1
        for x in range(w):
            out[row + x] = s8[y, x]
    return out


@numba.njit(cache=True, nogil=True)
def find(parent: np.ndarray, i: int) -> int:
    """Root of i's set, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def new_set(parent, size, box, q: int, x: int, y: int) -> None:
    """Make pixel q (at column x, row y) a singleton set with its own box."""
    parent[q] = q
    size[q] = 1
    box[q, 0] = x
    box[q, 1] = y
    box[q, 2] = x
    box[q, 3] = y


@numba.njit(cache=True, nogil=True)
def link(parent, size, box, a: int, b: int) -> int:
    """Union of the sets rooted at a and b (by size), merging boxes; returns the new root."""
    if size[a] < size[b]:
        a, b = b, a
    parent[b] = a
    size[a] += size[b]
    box[a, 0] = min(box[a, 0], box[b, 0])
    box[a, 1] = min(box[a, 1], box[b, 1])
    box[a, 2] = max(box[a, 2], box[b, 2])
    box[a, 3] = max(box[a, 3], box[b, 3])
    return a


@numba.njit(cache=True, nogil=True)
def max_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """Max IoU of one inclusive box against gt [K, 4], the same int / int division as box_iou."""
    best = 0.0
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for k in range(gt.shape[0]):
        gx0, gy0, gx1, gy1 = gt[k, 0], gt[k, 1], gt[k, 2], gt[k, 3]
        iw = max(0, min(x1, gx1) - max(x0, gx0) + 1)
        ih = max(0, min(y1, gy1) - max(y0, gy0) + 1)
        inter = iw * ih
        union = area + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best:
            best = iou
    return best

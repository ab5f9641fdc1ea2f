"""Score-map and box generators covering the shapes that stress contour extraction."""

from __future__ import annotations

import cv2
import numpy as np

KINDS = (
    "smooth7",
    "smooth14",
    "noisy",
    "blobs",
    "constant",
    "ring",
    "border",
    "islands",
    "binary",
    "unnormalised",
)
# Topologies that stress the compiled sweeps: grids of holes, rings nested in holes, 1-pixel
# islands and holes, blocky maps full of diagonal contacts and equal-area ties.
EXTRA_KINDS = ("holes", "nested", "pepper", "blocks")
ALL_KINDS = KINDS + EXTRA_KINDS


def _normalise(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / m.max() if m.max() > 0 else np.zeros_like(m)


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _upsampled(rng: np.random.Generator, k: int, size: int | tuple[int, int]) -> np.ndarray:
    h, w = _shape(size)
    return cv2.resize(rng.random((k, k)), (w, h), interpolation=cv2.INTER_CUBIC)


def scoremap(kind: str, rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """One float64 score map [H, W] in [0, 1] of the given kind; ``size`` is S or (H, W)."""
    h, w = _shape(size)
    side = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "smooth7":
        return _normalise(_upsampled(rng, 7, size))
    if kind == "smooth14":
        return _normalise(_upsampled(rng, 14, size))
    if kind == "noisy":
        return _normalise(_upsampled(rng, 7, size) + rng.uniform(0.05, 1.0) * rng.random((h, w)))
    if kind in ("blobs", "border"):
        m = np.zeros((h, w))
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            if kind == "border":  # centres on the frame, so blobs are clipped by it
                cy, cx = rng.choice([0.0, h - 1.0]), rng.uniform(0, w)
            sigma = rng.uniform(1.0, max(side / 4, 1.5))
            m += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        return _normalise(m)
    if kind == "constant":
        return np.full((h, w), rng.choice([0.0, 0.37, 1.0]))
    if kind == "ring":
        cy, cx = rng.uniform(h / 4, 3 * h / 4), rng.uniform(w / 4, 3 * w / 4)
        r = np.hypot(yy - cy, xx - cx)
        radius, width = rng.uniform(side / 8, side / 3), rng.uniform(1.0, max(side / 8, 1.5))
        m = np.exp(-((r - radius) ** 2) / (2 * width**2)) + 0.3 * rng.random() * _upsampled(
            rng, 7, size
        )
        return _normalise(m)
    if kind == "islands":
        m = 0.2 * _normalise(_upsampled(rng, 7, size))
        n = int(rng.integers(1, 30))
        m[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.uniform(0.3, 1.0, n)
        return _normalise(m)
    if kind == "binary":  # few levels, many equal-area ties
        return rng.choice([0.0, 0.5, 1.0], size=(h, w), p=[0.6, 0.3, 0.1])
    if kind == "unnormalised":  # valid input whose max is below 1
        return 0.8 * _normalise(_upsampled(rng, 7, size))
    if kind == "holes":  # egg-crate: blobs at high levels, a net full of holes at low ones
        fy, fx = rng.uniform(0.3, 1.5, 2)
        m = np.cos(fy * yy + rng.uniform(0, 6)) * np.cos(fx * xx + rng.uniform(0, 6))
        return _normalise(m + 0.4 * rng.random() * _upsampled(rng, 7, size))
    if kind == "nested":  # concentric rings: components inside holes inside components
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = np.hypot(yy - cy, xx - cx)
        m = np.cos(r * rng.uniform(0.5, 1.5)) * np.exp(-r / rng.uniform(side / 4, 2 * side))
        return _normalise(m + 0.2 * rng.random() * _upsampled(rng, 5, size))
    if kind == "pepper":  # smooth map with 1-pixel islands and 1-pixel holes
        m = _normalise(_upsampled(rng, 7, size))
        hit = rng.random((h, w)) < rng.uniform(0.02, 0.2)
        m[hit] = rng.random(int(hit.sum()))
        return m
    if kind == "blocks":  # nearest-upsampled random levels: diagonal contacts, equal areas
        k = int(rng.integers(2, 9))
        levels = rng.choice([0.0, 0.3, 0.6, 1.0], size=(k, k))
        return cv2.resize(levels, (w, h), interpolation=cv2.INTER_NEAREST)
    raise ValueError(kind)


def gt_boxes(rng: np.random.Generator, size: int | tuple[int, int], k: int = 0) -> np.ndarray:
    """k (default 1-3 at random) inclusive boxes [K, 4] inside an S x S or H x W frame."""
    h, w = _shape(size)
    k = k or int(rng.integers(1, 4))
    xs = np.sort(rng.integers(0, w, (k, 2)), axis=1)
    ys = np.sort(rng.integers(0, h, (k, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1).astype(np.int64)


def dataset(
    n: int, size: int | tuple[int, int], seed: int, kinds: tuple[str, ...] = KINDS
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n maps cycling through ``kinds``, with their GT boxes."""
    rng = np.random.default_rng(seed)
    maps = [scoremap(kinds[i % len(kinds)], rng, size) for i in range(n)]
    return maps, [gt_boxes(rng, size) for _ in range(n)]

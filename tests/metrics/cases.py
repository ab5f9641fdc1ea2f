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


def _normalise(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / m.max() if m.max() > 0 else np.zeros_like(m)


def _upsampled(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    return cv2.resize(rng.random((k, k)), (size, size), interpolation=cv2.INTER_CUBIC)


def scoremap(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One float64 score map [size, size] in [0, 1] of the given kind."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "smooth7":
        return _normalise(_upsampled(rng, 7, size))
    if kind == "smooth14":
        return _normalise(_upsampled(rng, 14, size))
    if kind == "noisy":
        return _normalise(
            _upsampled(rng, 7, size) + rng.uniform(0.05, 1.0) * rng.random((size, size))
        )
    if kind in ("blobs", "border"):
        m = np.zeros((size, size))
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(0, size, 2)
            if kind == "border":  # centres on the frame, so blobs are clipped by it
                cy, cx = rng.choice([0.0, size - 1.0]), rng.uniform(0, size)
            sigma = rng.uniform(1.0, size / 4)
            m += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        return _normalise(m)
    if kind == "constant":
        return np.full((size, size), rng.choice([0.0, 0.37, 1.0]))
    if kind == "ring":
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        r = np.hypot(yy - cy, xx - cx)
        radius, width = rng.uniform(size / 8, size / 3), rng.uniform(1.0, size / 8)
        m = np.exp(-((r - radius) ** 2) / (2 * width**2)) + 0.3 * rng.random() * _upsampled(
            rng, 7, size
        )
        return _normalise(m)
    if kind == "islands":
        m = 0.2 * _normalise(_upsampled(rng, 7, size))
        idx = rng.integers(0, size, (int(rng.integers(1, 30)), 2))
        m[idx[:, 0], idx[:, 1]] = rng.uniform(0.3, 1.0, len(idx))
        return _normalise(m)
    if kind == "binary":  # few levels, many equal-area ties
        return rng.choice([0.0, 0.5, 1.0], size=(size, size), p=[0.6, 0.3, 0.1])
    if kind == "unnormalised":  # valid input whose max is below 1
        return 0.8 * _normalise(_upsampled(rng, 7, size))
    raise ValueError(kind)


def gt_boxes(rng: np.random.Generator, size: int) -> np.ndarray:
    """1-3 random inclusive boxes [K, 4] inside a size x size frame."""
    k = int(rng.integers(1, 4))
    xs = np.sort(rng.integers(0, size, (k, 2)), axis=1)
    ys = np.sort(rng.integers(0, size, (k, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1).astype(np.int64)


def dataset(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n maps cycling through every kind, with their GT boxes."""
    rng = np.random.default_rng(seed)
    maps = [scoremap(KINDS[i % len(KINDS)], rng, size) for i in range(n)]
    return maps, [gt_boxes(rng, size) for _ in range(n)]

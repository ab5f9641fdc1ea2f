"""Threshold grid and uint8 quantisation shared by every WSOL metric."""

from __future__ import annotations

import numpy as np


def cam_thresholds(cam_curve_interval: float) -> np.ndarray:
    """Return the reference threshold grid ``np.arange(0, 1, d)``.

    Args:
        cam_curve_interval: grid step d (0.001 in the reference training loop).

    Returns:
        float64 array [T]; built with ``np.arange`` so each tau is bit-identical to the reference.
    """
    if not 0.0 < cam_curve_interval < 1.0:
        raise ValueError(f"cam_curve_interval must be in (0, 1), got {cam_curve_interval}")
    return np.arange(0, 1, cam_curve_interval)


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """Quantise a score map like the reference: ``(s * 255).astype(uint8)``.

    The product is taken in the map's own dtype (float64 in the reference pipeline), because
    float32 and float64 can round ``255 * s`` to different sides of an integer.

    Args:
        scoremap: float array [H, W] in [0, 1].

    Returns:
        uint8 array [H, W].
    """
    return (scoremap * 255).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """Integer cut level ``int(tau * max(s8))`` for every tau; foreground is ``s8 > level``.

    Args:
        thresholds: float64 array [T] of taus in [0, 1).
        max_value: ``max(s8)`` of the quantised map.

    Returns:
        int64 array [T]. Same float64 product and truncation as the reference's ``int(...)``.
    """
    return (np.asarray(thresholds, dtype=np.float64) * max_value).astype(np.int64)

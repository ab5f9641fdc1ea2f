"""Box IoU with the reference's inclusive-pixel convention."""

from __future__ import annotations

import numpy as np


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of (x0, y0, x1, y1) boxes, ends inclusive (+1 in widths).

    Args:
        boxes_a: integer array [A, 4].
        boxes_b: integer array [B, 4].

    Returns:
        float64 array [A, B]; 0 where the union is <= 0, as in the reference.
    """
    a = np.asarray(boxes_a, dtype=np.int64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    # Same int/int true division as the reference, so every IoU is bit-identical.
    ious = inter / np.where(degenerate, 1, union)
    ious[degenerate] = 0.0
    return ious

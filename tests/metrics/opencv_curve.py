"""The previous MaxBoxAcc curve path, one ``cv2.findContours`` per distinct level: a second,
independent implementation that the union-find sweep (``camlab.metrics.max_iou_curve``) is
checked against in ``test_maxtree.py``."""

from __future__ import annotations

import numpy as np

from camlab.metrics.contours import (
    _EMPTY_BOX,
    _contour_areas2,
    _contour_boxes,
    _find_contours,
    level_masks,
)
from camlab.metrics.iou import box_iou
from camlab.metrics.thresholds import quantize


def _foreground_bounds(s8: np.ndarray) -> tuple[np.ndarray, ...]:
    """For every value v, the inclusive bounding rows/cols of ``s8 >= v`` (arrays [256])."""

    def first_last(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(len(profile))
        first = np.full(256, len(profile), dtype=np.int64)
        last = np.full(256, -1, dtype=np.int64)
        np.minimum.at(first, profile, idx)
        np.maximum.at(last, profile, idx)
        # ">= v" pools every value from v up to 255.
        return np.minimum.accumulate(first[::-1])[::-1], np.maximum.accumulate(last[::-1])[::-1]

    y0, y1 = first_last(s8.max(axis=1))
    x0, x1 = first_last(s8.max(axis=0))
    return y0, y1, x0, x1


def max_iou_curve_opencv(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, multi_contour: bool
) -> np.ndarray:
    """As :func:`camlab.metrics.max_iou_curve`, with one ``cv2.findContours`` per distinct level.

    Args:
        scoremap: float array [H, W] in [0, 1].
        gt_boxes: integer array [K, 4] (x0, y0, x1, y1), ends inclusive.
        thresholds: float64 array [T] (see :func:`camlab.metrics.thresholds.cam_thresholds`).
        multi_contour: True for MaxBoxAccV2 (all contours), False for v1 (largest contour).

    Returns:
        float64 array [T].
    """
    s8 = quantize(np.asarray(scoremap))
    height, width = s8.shape
    values, inverse = level_masks(s8, thresholds)
    y0, y1, x0, x1 = _foreground_bounds(s8)

    contours: list[np.ndarray] = []
    per_level = np.zeros(len(values), dtype=np.int64)
    for i, v in enumerate(values.tolist()):
        if v > 255:
            continue
        crop = s8[y0[v] : y1[v] + 1, x0[v] : x1[v] + 1]
        found = _find_contours((crop >= v).view(np.uint8), (int(x0[v]), int(y0[v])))
        per_level[i] = len(found)
        contours.extend(found)

    empty_iou = box_iou(_EMPTY_BOX, gt_boxes)[0].max()
    scores = np.full(len(values), empty_iou, dtype=np.float64)
    if contours:
        lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
        starts = np.concatenate([[0], np.cumsum(lengths[:-1])])
        points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
        boxes = _contour_boxes(points, starts, height, width)
        level_of = np.repeat(np.arange(len(values)), per_level)
        if not multi_contour:
            # Keep the first largest-area contour of each level, like max(key=contourArea).
            areas = _contour_areas2(points, starts)
            best = np.full(len(values), -1, dtype=np.int64)
            np.maximum.at(best, level_of, areas)
            is_best = areas == best[level_of]
            _, first = np.unique(level_of[is_best], return_index=True)
            keep = np.flatnonzero(is_best)[first]
            boxes, level_of = boxes[keep], level_of[keep]
        contour_iou = box_iou(boxes, gt_boxes).max(axis=1)
        level_iou = np.full(len(values), -1.0)
        np.maximum.at(level_iou, level_of, contour_iou)
        has = per_level > 0
        scores[has] = level_iou[has]
    return scores[inverse]

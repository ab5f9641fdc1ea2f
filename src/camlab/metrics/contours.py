"""Boxes from thresholded score maps, exactly as the reference's OpenCV pipeline.

The reference thresholds the uint8 map at every tau and calls ``cv2.findContours`` each time.
After quantisation a tau only matters through the smallest present value above its cut level
(:func:`level_masks`), so :func:`max_iou_curve` scores each distinct foreground once, all of them
in one compiled union-find sweep (:mod:`camlab.metrics.maxtree`). The previous path, one
``findContours`` per distinct level, is kept as a cross-check in ``tests/metrics/opencv_curve.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

from camlab.metrics.iou import box_iou
from camlab.metrics.maxtree import level_ious
from camlab.metrics.thresholds import quantize, threshold_levels

_EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def _find_contours(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> tuple:
    # OpenCV >= 4 returns (contours, hierarchy); 3.x returned (image, contours, hierarchy).
    found = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    return found[-2]


def _contour_boxes(points: np.ndarray, starts: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference boxes (x, y, min(x + w, W - 1), min(y + h, H - 1)) of concatenated contours."""
    x, y = points[:, 0], points[:, 1]
    x0 = np.minimum.reduceat(x, starts)
    y0 = np.minimum.reduceat(y, starts)
    # boundingRect's w = xmax - xmin + 1, so the reference's exclusive end x + w is xmax + 1.
    x1 = np.minimum(np.maximum.reduceat(x, starts) + 1, width - 1)
    y1 = np.minimum(np.maximum.reduceat(y, starts) + 1, height - 1)
    return np.stack([x0, y0, x1, y1], axis=1)


def _contour_areas2(points: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Twice ``cv2.contourArea`` (shoelace, exact in int64) of concatenated contours."""
    n = len(points)
    nxt = np.arange(1, n + 1)
    nxt[np.append(starts[1:], n) - 1] = starts  # close each polygon
    x, y = points[:, 0], points[:, 1]
    cross = x * y[nxt] - x[nxt] * y
    return np.abs(np.add.reduceat(cross, starts))


def boxes_at_threshold(scoremap: np.ndarray, tau: float, multi_contour: bool) -> np.ndarray:
    """Predicted boxes of one score map at one threshold (the reference, one tau at a time).

    Args:
        scoremap: float array [H, W] in [0, 1].
        tau: threshold in [0, 1).
        multi_contour: True keeps every contour (MaxBoxAccV2); False the largest-area one.

    Returns:
        int64 array [K, 4] of (x0, y0, x1, y1); [[0, 0, 0, 0]] when nothing is above tau.
    """
    s8 = quantize(np.asarray(scoremap))
    height, width = s8.shape
    level = int(threshold_levels(np.array([tau]), int(s8.max()))[0])
    contours = _find_contours((s8 > level).view(np.uint8))
    if len(contours) == 0:
        return _EMPTY_BOX.copy()
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.cumsum([0] + [len(c) for c in contours[:-1]])
    boxes = _contour_boxes(points, starts, height, width)
    if multi_contour:
        return boxes
    return boxes[[int(np.argmax(_contour_areas2(points, starts)))]]


def best_iou(scoremap: np.ndarray, gt_boxes: np.ndarray, tau: float, multi_contour: bool) -> float:
    """Image score at one tau: max IoU over (predicted, GT) box pairs.

    Args:
        scoremap: float array [H, W] in [0, 1].
        gt_boxes: integer array [K, 4] in the score map's frame, ends inclusive.
        tau: threshold in [0, 1).
        multi_contour: see :func:`boxes_at_threshold`.
    """
    return float(box_iou(boxes_at_threshold(scoremap, tau, multi_contour), gt_boxes).max())


def level_masks(s8: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group taus by the foreground mask they produce.

    Args:
        s8: uint8 array [H, W].
        thresholds: float64 array [T].

    Returns:
        ``values`` int64 [M] (each mask is ``s8 >= v``; 256 means empty) and ``inverse`` [T]
        mapping each tau to its entry in ``values``.
    """
    present = cv2.calcHist([s8], [0], None, [256], [0, 256]).ravel() > 0
    # next_value[L] = smallest present value > L (256 if none): mask(s8 > L) == mask(s8 >= it).
    candidates = np.where(present, np.arange(256), 256)
    next_value = np.append(np.minimum.accumulate(candidates[::-1])[::-1][1:], 256)
    levels = threshold_levels(thresholds, int(s8.max()))
    return np.unique(next_value[levels], return_inverse=True)


def max_iou_curve(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, multi_contour: bool
) -> np.ndarray:
    """Image score (max IoU with the GT boxes) at every tau, identical to the reference.

    Args:
        scoremap: float array [H, W] in [0, 1].
        gt_boxes: integer array [K, 4] (x0, y0, x1, y1), ends inclusive.
        thresholds: float64 array [T] (see :func:`camlab.metrics.thresholds.cam_thresholds`).
        multi_contour: True for MaxBoxAccV2 (all contours), False for v1 (largest contour).

    Returns:
        float64 array [T].
    """
    s8 = quantize(np.asarray(scoremap))
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    values, inverse = level_masks(s8, thresholds)
    need = np.zeros(257, dtype=np.bool_)
    need[values] = True
    need[256] = False  # the empty foreground: no contour, the reference's zero box
    scores = level_ious(s8, gt, need, multi_contour)
    scores[256] = box_iou(_EMPTY_BOX, gt)[0].max()
    return scores[values][inverse]

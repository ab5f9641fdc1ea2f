"""Straightforward reference implementation of the WSOL metrics, written from the protocol note.

One OpenCV call chain per image per threshold, exactly as the reference evaluator; used only as
the ground truth the fast implementation must match bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np


def thresholds(interval: float) -> list:
    return list(np.arange(0, 1, interval))


def iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    a = np.array(boxes_a, dtype=np.int64)[:, None, :]
    b = np.array(boxes_b, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    union = (
        (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        - inter
    )
    out = inter / np.where(union <= 0, 1, union)
    out[union <= 0] = 0.0
    return out


def boxes_at(scoremap: np.ndarray, tau: float, multi_contour: bool) -> list:
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, mask = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]]
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return boxes


def image_scores(scoremap, gt_boxes, taus, multi_contour) -> np.ndarray:
    """Max IoU over (predicted, GT) pairs at each tau: float64 [T]."""
    gt = [list(map(int, b)) for b in gt_boxes]
    return np.array([iou_matrix(boxes_at(scoremap, t, multi_contour), gt).max() for t in taus])


def max_box_acc(scoremaps, gt_boxes, interval=0.001, iou_thresholds=(30, 50, 70), multi=True):
    """Returns (mean of maxima, maxima per delta, best tau index per delta, curve [D, T])."""
    taus = thresholds(interval)
    num_correct = {d: np.zeros(len(taus)) for d in iou_thresholds}
    for s, g in zip(scoremaps, gt_boxes, strict=True):
        scores = image_scores(s, g, taus, multi)
        for d in iou_thresholds:
            num_correct[d][np.where(scores >= d / 100)[0]] += 1
    curve = np.stack([num_correct[d] * 100.0 / float(len(scoremaps)) for d in iou_thresholds])
    maxima = [c.max() for c in curve]
    return np.average(maxima), maxima, [int(np.argmax(c)) for c in curve], curve


def pxap(scoremaps, masks, ignores=None, interval=0.001) -> tuple:
    """Returns (PxAP, precision, recall) with global histograms over all pixels."""
    taus = thresholds(interval)
    edges = np.append(taus, [1.0, 2.0, 3.0])
    pos = np.zeros(len(taus) + 2)
    neg = np.zeros(len(taus) + 2)
    for i, (s, m) in enumerate(zip(scoremaps, masks, strict=True)):
        gt = m.astype(np.uint8)
        if ignores is not None:
            gt = gt + 255 * (ignores[i] & ~m).astype(np.uint8)
        pos += np.histogram(s[gt == 1], bins=edges)[0].astype(float)
        neg += np.histogram(s[gt == 0], bins=edges)[0].astype(float)
    tp = pos[::-1].cumsum()
    fn = pos.sum() - tp
    fp = neg[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    nonzero = (tp + fp) != 0
    return (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100, precision, recall

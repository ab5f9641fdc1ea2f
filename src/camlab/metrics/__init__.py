"""Exact WSOL localisation metrics (Choe et al., CVPR 2020) as torchmetrics Metrics."""

from camlab.metrics.box_acc import MaxBoxAcc
from camlab.metrics.cam_loc import LocalizationAccuracy
from camlab.metrics.contours import best_iou, boxes_at_threshold, max_iou_curve
from camlab.metrics.iou import box_iou
from camlab.metrics.pxap import PxAP, pxap_from_histograms
from camlab.metrics.scoremap import (
    cams_to_scoremaps,
    normalize_scoremap,
    rescale_boxes,
    resize_masks,
)
from camlab.metrics.thresholds import cam_thresholds

__all__ = [
    "LocalizationAccuracy",
    "MaxBoxAcc",
    "PxAP",
    "best_iou",
    "box_iou",
    "boxes_at_threshold",
    "cam_thresholds",
    "cams_to_scoremaps",
    "max_iou_curve",
    "normalize_scoremap",
    "pxap_from_histograms",
    "rescale_boxes",
    "resize_masks",
]

"""Exact WSOL localisation metrics (Choe et al., CVPR 2020) and saliency faithfulness metrics
(Average Drop, deletion / insertion, ROAD, pointing game) as torchmetrics Metrics."""

from camlab.metrics.box_acc import MaxBoxAcc
from camlab.metrics.cam_loc import LocalizationAccuracy
from camlab.metrics.contours import best_iou, boxes_at_threshold, max_iou_curve
from camlab.metrics.faithfulness import (
    ROAD,
    AverageDropIncrease,
    DeletionInsertion,
    FaithfulnessMetrics,
    PointingGame,
    confidence_scores,
    deletion_insertion_curves,
    noisy_linear_impute,
    pointing_hits,
    road_keep_masks,
    road_scores,
)
from camlab.metrics.iou import box_iou
from camlab.metrics.pxap import PxAP, pxap_from_histograms
from camlab.metrics.thresholds import cam_thresholds
from camlab.protocol import cams_to_scoremaps, normalize_scoremap, rescale_boxes, resize_masks

__all__ = [
    "ROAD",
    "AverageDropIncrease",
    "DeletionInsertion",
    "FaithfulnessMetrics",
    "LocalizationAccuracy",
    "MaxBoxAcc",
    "PointingGame",
    "PxAP",
    "best_iou",
    "box_iou",
    "boxes_at_threshold",
    "cam_thresholds",
    "cams_to_scoremaps",
    "confidence_scores",
    "deletion_insertion_curves",
    "max_iou_curve",
    "noisy_linear_impute",
    "normalize_scoremap",
    "pointing_hits",
    "pxap_from_histograms",
    "rescale_boxes",
    "resize_masks",
    "road_keep_masks",
    "road_scores",
]

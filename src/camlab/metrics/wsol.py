"""The WSOL protocol's metric set, shared by validation (``ValLocalization``) and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.box_acc import MaxBoxAcc
from camlab.metrics.cam_loc import LocalizationAccuracy
from camlab.metrics.pxap import PxAP
from camlab.protocol import CAM_CURVE_INTERVAL, CAM_THRESHOLD, IOU_THRESHOLDS


class MaxBoxAccTop1(MaxBoxAcc):
    """MaxBoxAcc v1 (largest contour, IoU >= 50) that also counts, per threshold, the hits of
    correctly classified images, so Top-1 Loc is known at the threshold where v1 peaks.

    At that threshold GT-known Loc is the v1 accuracy itself (the same box and IoU test);
    Top-1 Loc needs the extra ``[1, T]`` count, summed over DDP ranks like the others. Each
    image's IoU curve is computed once for both counts.

    Args:
        cam_curve_interval: threshold grid step.
    """

    def __init__(self, cam_curve_interval: float = CAM_CURVE_INTERVAL, **kwargs) -> None:
        super().__init__(cam_curve_interval, (50,), multi_contour=False, **kwargs)
        self.add_state("num_top1", torch.zeros_like(self.num_correct), dist_reduce_fx="sum")

    def update(  # type: ignore[override]
        self, scoremaps: Tensor, gt_boxes: Sequence[Tensor], correct: Tensor | None = None
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps: float [N, H, W] in [0, 1].
            gt_boxes: N integer tensors [K_i, 4] (x0, y0, x1, y1), inclusive.
            correct: bool [N], top-1 prediction == label (None: all wrong).
        """
        hits = self.hits(scoremaps, gt_boxes)  # [N, 1, T]: each image's curve once
        flags = np.zeros(len(hits), bool) if correct is None else correct.cpu().numpy()
        self.num_correct += torch.from_numpy(hits.sum(axis=0, dtype=np.int64)).to(
            self.num_correct.device
        )
        top1 = hits[flags.astype(bool)].sum(axis=0, dtype=np.int64)
        self.num_top1 += torch.from_numpy(top1).to(self.num_top1.device)
        self.num_images += len(hits)

    def compute(self) -> dict[str, Tensor]:
        """MaxBoxAcc's dict plus ``top1_loc_at_best`` and ``gt_known_loc_at_best`` (percent)."""
        out = super().compute()
        best = int(out["curve"][0].argmax())
        n = float(self.num_images)
        out["top1_loc_at_best"] = torch.tensor(float(self.num_top1[0, best]) * 100.0 / n)
        out["gt_known_loc_at_best"] = torch.tensor(float(self.num_correct[0, best]) * 100.0 / n)
        return out


class WSOLMetrics(nn.Module):
    """MaxBoxAccV2, MaxBoxAcc (v1), Top-k / GT-known Loc and PxAP of one CAM method on one split.

    A module, so Lightning moves the torchmetrics states to the device DDP syncs on; every
    state is summed over ranks at ``compute``. The threshold grid (``cam_curve_interval``) is
    shared by all of them.

    Args:
        cam_curve_interval: threshold grid step of MaxBoxAcc and PxAP.
        iou_thresholds: IoU thresholds (percent) averaged by MaxBoxAccV2.
        cam_threshold: the fixed threshold of Top-k / GT-known Loc (CAM paper: 0.2).
        topk: the k of Top-k Loc.
        boxes: score the box metrics (the split has boxes).
        masks: score PxAP (the split has masks).
    """

    def __init__(
        self,
        cam_curve_interval: float = CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = IOU_THRESHOLDS,
        cam_threshold: float = CAM_THRESHOLD,
        topk: Sequence[int] = (1,),
        boxes: bool = True,
        masks: bool = False,
    ) -> None:
        super().__init__()
        self.boxes, self.masks = boxes, masks
        self.box_v2 = MaxBoxAcc(cam_curve_interval, tuple(iou_thresholds), multi_contour=True)
        self.box_v1 = MaxBoxAccTop1(cam_curve_interval)
        self.loc = LocalizationAccuracy(cam_threshold, 0.5, topk=tuple(topk))
        self.pxap = PxAP(cam_curve_interval)

    def update(
        self,
        scoremaps: Tensor,
        logits: Tensor,
        labels: Tensor,
        boxes: Sequence[Tensor] | None = None,
        masks: Tensor | None = None,
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps: float [N, H, W] in [0, 1] (``cams_to_scoremaps``).
            logits: [N, C] class scores.
            labels: int64 [N].
            boxes: N int64 tensors [K_i, 4] (``gt_box_list``); needed when ``boxes``.
            masks: uint8 [N, H, W] (1 object, 0 background, 255 ignored); needed when ``masks``.
        """
        if self.masks:
            mask = masks.cpu()
            self.pxap.update(scoremaps, mask == 1, ignore=mask == 255)
        if self.boxes:
            logits, labels = logits.detach().cpu(), labels.cpu()
            self.box_v2.update(scoremaps, boxes)
            self.box_v1.update(scoremaps, boxes, logits.argmax(dim=1) == labels)
            self.loc.update(logits, labels, scoremaps, boxes)

    def compute(self) -> dict[str, Any]:
        """``{"v2", "v1", "loc"}`` (with boxes) and ``"pxap"`` (with masks): each metric's dict."""
        out: dict[str, Any] = {}
        if self.boxes:
            out["v2"] = self.box_v2.compute()
            out["v1"] = self.box_v1.compute()
            out["loc"] = self.loc.compute()
        if self.masks:
            out["pxap"] = self.pxap.compute()
        return out

    def reset(self) -> None:
        for metric in (self.box_v2, self.box_v1, self.loc, self.pxap):
            metric.reset()

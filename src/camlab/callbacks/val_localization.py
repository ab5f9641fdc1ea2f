"""WSOL localisation metrics on the validation split, from the validation forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from camlab.cam import cam_from_features, unwrap_model
from camlab.errors import CamlabError
from camlab.metrics import LocalizationAccuracy, MaxBoxAcc, PxAP, cams_to_scoremaps

THRESHOLD_KEY = "val/max_box_acc_threshold"


def gt_box_list(boxes: Tensor) -> list[Tensor]:
    """Batch boxes ``[B, K, 4]`` with ``-1`` padding rows -> B CPU int64 tensors ``[K_i, 4]``."""
    boxes = boxes.detach().cpu().long()
    return [b[b[:, 0] >= 0] for b in boxes]


def gap_weight(pl_module: torch.nn.Module) -> Tensor:
    """Weight ``[K, C]`` of the GAP-linear head (``gap_classifier`` or ``net.classifier``)."""
    module = unwrap_model(pl_module)
    head = getattr(module, "gap_classifier", None)
    if head is None:
        head = getattr(getattr(module, "net", None), "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise CamlabError(
            f"{type(module).__name__} has no GAP-linear head (`gap_classifier`): ValLocalization "
            "needs it to make CAMs from the validation features."
        )
    return head.weight


class ValLocalization(Callback):
    """MaxBoxAccV2, MaxBoxAcc (v1), Top-1 Loc and GT-known Loc on the validation split.

    GT-class CAMs come from the CAM-layer features that ``validation_step`` returns
    (``{"logits", "features"}``): no second forward pass. They are upsampled to the image size
    (bicubic, float64) and min-max normalised, the batch's boxes being in that pixel frame. The
    metrics are torchmetrics states, summed over DDP ranks at ``compute``; every rank computes.

    Logs ``val/max_box_acc_v2``, ``val/max_box_acc``, ``val/top1_loc`` and ``val/gt_known_loc``
    (percent), and ``val/max_box_acc_threshold`` (the CAM threshold at which MaxBoxAcc v1 peaks)
    at the end of every validation epoch, before ``ModelCheckpoint`` reads them, so
    ``ModelCheckpoint(monitor="val/max_box_acc_v2")`` works; data with masks add ``val/pxap``,
    and data without boxes (OpenImages) log PxAP only.

    Args:
        cam_curve_interval: threshold grid step of MaxBoxAcc.
        iou_thresholds: IoU thresholds (percent) averaged by MaxBoxAccV2.
        cam_threshold: the fixed threshold of Top-1 / GT-known Loc (CAM paper: 0.2).
    """

    def __init__(
        self,
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        cam_threshold: float = 0.2,
    ) -> None:
        super().__init__()
        self.box_acc_v2 = MaxBoxAcc(cam_curve_interval, tuple(iou_thresholds), multi_contour=True)
        self.box_acc_v1 = MaxBoxAcc(cam_curve_interval, (50,), multi_contour=False)
        self.loc_acc = LocalizationAccuracy(cam_threshold, 0.5, topk=(1,))
        self.pxap = PxAP(cam_curve_interval)
        self.boxes, self.masks = True, False

    @property
    def metrics(self) -> tuple[Any, ...]:
        return (self.box_acc_v2, self.box_acc_v1, self.loc_acc, self.pxap)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Decided once from the data set, so every DDP rank computes the same metrics.
        data = getattr(trainer, "datamodule", None)
        if stage == "fit" and data is not None and hasattr(data, "has_boxes"):
            self.boxes, self.masks = data.has_boxes("val"), data.has_masks("val")
        for metric in self.metrics:
            metric.to(pl_module.device)  # the device DDP syncs on (CUDA for NCCL)
            metric.reset()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for metric in self.metrics:
            metric.to(pl_module.device)
            metric.reset()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        if not isinstance(outputs, dict) or "features" not in outputs or "logits" not in outputs:
            raise CamlabError(
                "ValLocalization needs validation_step to return a dict with 'logits' and "
                "'features' (the CAM-layer feature maps), as GAPClassifier does."
            )
        labels = batch["label"]
        cams = cam_from_features(outputs["features"], gap_weight(pl_module), targets=labels)
        scoremaps = cams_to_scoremaps(cams, tuple(batch["image"].shape[-2:]))
        if self.masks:
            mask = batch["mask"].cpu()
            self.pxap.update(scoremaps, mask == 1, ignore=mask == 255)
        if not self.boxes:
            return
        boxes = gt_box_list(batch["box"])
        self.box_acc_v2.update(scoremaps, boxes)
        self.box_acc_v1.update(scoremaps, boxes)
        self.loc_acc.update(outputs["logits"].detach().cpu(), labels.cpu(), scoremaps, boxes)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # compute() all-reduces the states: every rank gets here and calls it.
        values = {}
        if self.boxes:
            loc = self.loc_acc.compute()
            v1 = self.box_acc_v1.compute()
            values["val/max_box_acc_v2"] = self.box_acc_v2.compute()["max_box_acc"]
            values["val/max_box_acc"] = v1["max_box_acc"]
            # The data-set-wide threshold a user would deploy (CAMPanel draws its red box at it).
            values[THRESHOLD_KEY] = v1["best_threshold@50"]
            values["val/top1_loc"] = loc["top1_loc"]
            values["val/gt_known_loc"] = loc["gt_known_loc"]
        if self.masks:
            values["val/pxap"] = self.pxap.compute()["pxap"]
        for name, value in values.items():
            # Already the global value on every rank: no second reduction.
            pl_module.log(name, float(value), on_step=False, on_epoch=True, sync_dist=False)
        for metric in self.metrics:
            metric.reset()

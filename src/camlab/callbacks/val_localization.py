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
from camlab.metrics.wsol import WSOLMetrics
from camlab.protocol import (
    CAM_CURVE_INTERVAL,
    CAM_THRESHOLD,
    IOU_THRESHOLDS,
    cams_to_scoremaps,
    gt_box_list,
)

THRESHOLD_KEY = "val/max_box_acc_threshold"
# Top-1 / GT-known Loc again at THRESHOLD_KEY: at the fixed 0.2 they are flat 0 on small CAMs.
AT_BEST = "_at_best_tau"


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

    Logs at the end of every validation epoch ``val/max_box_acc_v2``, ``val/max_box_acc``,
    ``val/top1_loc`` and ``val/gt_known_loc`` (percent, at the fixed ``cam_threshold``),
    ``val/max_box_acc_threshold`` (the CAM threshold at which MaxBoxAcc v1 peaks) and
    ``val/top1_loc_at_best_tau`` / ``val/gt_known_loc_at_best_tau`` (percent, at that
    threshold), before ``ModelCheckpoint`` reads them, so
    ``ModelCheckpoint(monitor="val/max_box_acc_v2")`` works; data with masks add ``val/pxap``,
    and data without boxes (OpenImages) log PxAP only.

    Args:
        cam_curve_interval: threshold grid step of MaxBoxAcc.
        iou_thresholds: IoU thresholds (percent) averaged by MaxBoxAccV2.
        cam_threshold: the fixed threshold of Top-1 / GT-known Loc (CAM paper: 0.2).
    """

    def __init__(
        self,
        cam_curve_interval: float = CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = IOU_THRESHOLDS,
        cam_threshold: float = CAM_THRESHOLD,
    ) -> None:
        super().__init__()
        self.settings = (cam_curve_interval, tuple(iou_thresholds), cam_threshold)
        self.metrics = WSOLMetrics(*self.settings, topk=(1,), boxes=True, masks=False)

    def logged_names(self, datamodule: Any) -> list[str]:
        """The names logged for ``datamodule``'s validation split (boxes and/or masks)."""
        names = []
        if datamodule is None or datamodule.has_boxes("val"):
            names += [
                "val/max_box_acc_v2",
                "val/max_box_acc",
                THRESHOLD_KEY,
                "val/top1_loc",
                "val/gt_known_loc",
                f"val/top1_loc{AT_BEST}",
                f"val/gt_known_loc{AT_BEST}",
            ]
        if datamodule is None or datamodule.has_masks("val"):
            names.append("val/pxap")
        return names

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Decided once from the data set, so every DDP rank computes the same metrics.
        data = getattr(trainer, "datamodule", None)
        if stage == "fit" and data is not None and hasattr(data, "has_boxes"):
            boxes, masks = data.has_boxes("val"), data.has_masks("val")
            self.metrics = WSOLMetrics(*self.settings, topk=(1,), boxes=boxes, masks=masks)
        self.metrics.to(pl_module.device)  # the device DDP syncs on (CUDA for NCCL)
        self.metrics.reset()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metrics.to(pl_module.device)
        self.metrics.reset()

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
        cams = outputs.get("cams")  # the method's own map (the reference's ACoL), else CAM
        if cams is None:
            cams = cam_from_features(outputs["features"], gap_weight(pl_module), targets=labels)
        scoremaps = cams_to_scoremaps(cams, tuple(batch["image"].shape[-2:]))
        self.metrics.update(
            scoremaps,
            outputs["logits"],
            labels,
            boxes=gt_box_list(batch["box"]) if self.metrics.boxes else None,
            masks=batch.get("mask"),
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # compute() all-reduces the states: every rank gets here and calls it.
        out = self.metrics.compute()
        values = {}
        if "v2" in out:
            loc, v1 = out["loc"], out["v1"]
            values["val/max_box_acc_v2"] = out["v2"]["max_box_acc"]
            values["val/max_box_acc"] = v1["max_box_acc"]
            # The data-set-wide threshold a user would deploy (CAMPanel draws its red box at it).
            values[THRESHOLD_KEY] = v1["best_threshold@50"]
            values["val/top1_loc"] = loc["top1_loc"]
            values["val/gt_known_loc"] = loc["gt_known_loc"]
            values[f"val/top1_loc{AT_BEST}"] = v1["top1_loc_at_best"]
            values[f"val/gt_known_loc{AT_BEST}"] = v1["gt_known_loc_at_best"]
        if "pxap" in out:
            values["val/pxap"] = out["pxap"]["pxap"]
        for name, value in values.items():
            # Already the global value on every rank: no second reduction.
            pl_module.log(name, float(value), on_step=False, on_epoch=True, sync_dist=False)
        self.metrics.reset()

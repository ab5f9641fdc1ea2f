"""WSOL localisation metrics on the validation split, from the validation forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from camlab.cam import cam_from_features, unwrap_model
from camlab.errors import CamlabError
from camlab.metrics import LocalizationAccuracy, MaxBoxAcc, PxAP, cams_to_scoremaps, max_iou_curve
from camlab.metrics.validation import check_boxes, check_scoremaps
from camlab.protocol import gt_box_list

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


class MaxBoxAccTop1(MaxBoxAcc):
    """MaxBoxAcc v1 (largest contour, IoU >= 50) that also counts, per threshold, the hits of
    correctly classified images, so Top-1 Loc is known at the threshold where v1 peaks.

    At that threshold GT-known Loc is the v1 accuracy itself (the same box and IoU test);
    Top-1 Loc needs the extra ``[1, T]`` count, summed over DDP ranks like the others. Each
    image's IoU curve is computed once for both counts.

    Args:
        cam_curve_interval: threshold grid step.
    """

    def __init__(self, cam_curve_interval: float = 0.01, **kwargs) -> None:
        super().__init__(cam_curve_interval, (50,), multi_contour=False, **kwargs)
        self.add_state("num_top1", torch.zeros_like(self.num_correct), dist_reduce_fx="sum")

    def update(  # type: ignore[override]
        self, scoremaps: Tensor, gt_boxes: list[Tensor], correct: Tensor | None = None
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps: float [N, H, W] in [0, 1].
            gt_boxes: N integer tensors [K_i, 4] (x0, y0, x1, y1), inclusive.
            correct: bool [N], top-1 prediction == label (None: all wrong).
        """
        check_scoremaps(scoremaps)
        check_boxes(gt_boxes, len(scoremaps))
        flags = np.zeros(len(scoremaps), bool) if correct is None else correct.cpu().numpy()
        hits = np.zeros(self.num_correct.shape, np.int64)
        top1 = np.zeros_like(hits)
        maps = scoremaps.detach().cpu().numpy()
        for scoremap, boxes, ok in zip(maps, gt_boxes, flags, strict=True):
            gt = torch.as_tensor(boxes).cpu().numpy().astype(np.int64)
            hit = max_iou_curve(scoremap, gt, self._taus, False) >= 0.5
            hits[0] += hit
            top1[0] += hit & bool(ok)
        self.num_correct += torch.from_numpy(hits).to(self.num_correct.device)
        self.num_top1 += torch.from_numpy(top1).to(self.num_top1.device)
        self.num_images += len(scoremaps)

    def compute(self) -> dict[str, Tensor]:
        """MaxBoxAcc's dict plus ``top1_loc_at_best`` and ``gt_known_loc_at_best`` (percent)."""
        out = super().compute()
        best = int(out["curve"][0].argmax())
        n = float(self.num_images)
        out["top1_loc_at_best"] = torch.tensor(float(self.num_top1[0, best]) * 100.0 / n)
        out["gt_known_loc_at_best"] = torch.tensor(float(self.num_correct[0, best]) * 100.0 / n)
        return out


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
        cam_curve_interval: float = 0.01,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        cam_threshold: float = 0.2,
    ) -> None:
        super().__init__()
        self.box_acc_v2 = MaxBoxAcc(cam_curve_interval, tuple(iou_thresholds), multi_contour=True)
        self.box_acc_v1 = MaxBoxAccTop1(cam_curve_interval)
        self.loc_acc = LocalizationAccuracy(cam_threshold, 0.5, topk=(1,))
        self.pxap = PxAP(cam_curve_interval)
        self.boxes, self.masks = True, False

    @property
    def metrics(self) -> tuple[Any, ...]:
        return (self.box_acc_v2, self.box_acc_v1, self.loc_acc, self.pxap)

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
        logits = outputs["logits"].detach().cpu()
        self.box_acc_v1.update(scoremaps, boxes, logits.argmax(dim=1) == labels.cpu())
        self.loc_acc.update(logits, labels.cpu(), scoremaps, boxes)

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
            values[f"val/top1_loc{AT_BEST}"] = v1["top1_loc_at_best"]
            values[f"val/gt_known_loc{AT_BEST}"] = v1["gt_known_loc_at_best"]
        if self.masks:
            values["val/pxap"] = self.pxap.compute()["pxap"]
        for name, value in values.items():
            # Already the global value on every rank: no second reduction.
            pl_module.log(name, float(value), on_step=False, on_epoch=True, sync_dist=False)
        for metric in self.metrics:
            metric.reset()

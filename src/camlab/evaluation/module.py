"""One evaluation pass over a split as a LightningModule: CAMs, WSOL metrics, per-image rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader, default_collate
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from camlab.cam import compute_cam, compute_cams
from camlab.data.base import LocalizationDataModule
from camlab.errors import CamlabError
from camlab.evaluation.sanity import SanityCheck
from camlab.metrics import (
    FaithfulnessMetrics,
    box_iou,
    boxes_at_threshold,
    cam_thresholds,
    max_iou_curve,
)
from camlab.metrics.explanation import ExplanationMetrics
from camlab.metrics.wsol import WSOLMetrics
from camlab.protocol import cams_to_scoremaps, gt_box_list


class CamEvaluation(pl.LightningModule):
    """Scores the GT-class CAMs of ``classifier`` on one split of ``datamodule`` per method.

    Every rank sees a disjoint part of the split (no padding duplicates, unlike Lightning's
    DistributedSampler), metric states are summed across ranks, and per-image rows are
    gathered, so results do not depend on the number of processes.

    Args:
        classifier: a trained classifier (e.g. ``GAPClassifier``), in eval mode.
        datamodule: the data; its batches carry ``image``, ``label``, ``box``, ``index``
            (and ``mask`` for PxAP).
        methods: CAM methods of ``camlab.cam``.
        cam_curve_interval: threshold grid step of MaxBoxAcc and PxAP.
        iou_thresholds: IoU thresholds (percent) of MaxBoxAccV2.
        cam_threshold: the fixed threshold of Top-k / GT-known Loc.
        topk: the k of Top-k Loc and classification.
        boxes / masks: whether to compute the box metrics / PxAP.
        baselines: score-map modules for the entries of ``methods`` that are not CAM methods
            (``camlab.evaluation.baselines``): ``module(images, labels) -> [B, h, w]`` raw maps,
            scored exactly as CAMs.
        channels_last: run the classifier in the channels-last layout (NHWC), 1.2-1.3x faster
            on CPU convolutions; float32 as well, but summed in another order, so numbers can
            move in their last digits.
    """

    def __init__(
        self,
        classifier: nn.Module,
        datamodule: LocalizationDataModule,
        methods: Sequence[str],
        cam_curve_interval: float,
        iou_thresholds: Sequence[int],
        cam_threshold: float,
        topk: Sequence[int],
        boxes: bool,
        masks: bool,
        baselines: dict[str, nn.Module] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.classifier = classifier.eval()
        self.baselines = nn.ModuleDict(baselines or {})  # moved to the device with the rest
        self.datamodule_ = datamodule
        self.methods = list(methods)
        self.taus = cam_thresholds(cam_curve_interval)
        self.boxes, self.masks = boxes, masks
        self.topk = tuple(k for k in topk if k <= datamodule.num_classes)
        # ModuleDict keys cannot hold every method name ("gradcam++"): index by position.
        self.scores = nn.ModuleList(
            WSOLMetrics(cam_curve_interval, iou_thresholds, cam_threshold, self.topk, boxes, masks)
            for _ in self.methods
        )
        self.classification = nn.ModuleDict(
            {
                f"top{k}_cls": MulticlassAccuracy(datamodule.num_classes, top_k=k, average="micro")
                for k in self.topk
            }
        )
        self.split = "test"
        self.rows: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        # Opt-in faithfulness metrics (enable_faithfulness), one per method, on one split.
        self.faithfulness: nn.ModuleList | None = None
        self.faithfulness_split: str | None = None
        self.faithfulness_gt: str | None = None
        # Opt-in sanity checks (enable_sanity), of the CAM methods, on one split.
        self.sanity: SanityCheck | None = None
        self.sanity_split: str | None = None
        # Opt-in Quantus-parity metrics (enable_quantus), one per method, on one split.
        self.quantus: nn.ModuleList | None = None
        self.quantus_split: str | None = None
        self.quantus_images = 0
        self.quantus_gt: str | None = None

    def test_dataloader(self) -> DataLoader:
        dataset = self.datamodule_.dataset(self.split)
        sampler = None
        if self.trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                dataset, self.trainer.world_size, self.trainer.global_rank, shuffle=False
            )
        loader = self.datamodule_.test_dataloader()  # the data module's collate and workers
        return DataLoader(
            dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )

    def on_test_start(self) -> None:
        if self.channels_last:
            self.classifier.to(memory_format=torch.channels_last)

    def on_test_epoch_start(self) -> None:
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
        self.rows = []

    def raw_maps(self, method: str, images: Tensor, labels: Tensor) -> Tensor:
        """``[B, h, w]`` maps of the ``labels`` class by ``method`` (a CAM method or a baseline)."""
        return self._method_maps(method, images, labels, None)

    def _own_cam(self, images: Tensor, labels: Tensor) -> Tensor | None:
        """The WSOL method's own evaluation map (the reference's ACoL), scored as ``cam`` as
        the validation callback scores it; None for every other model."""
        own = getattr(self.classifier, "evaluation_cam", None)
        return own(images, labels) if own is not None else None

    def _method_maps(self, method: str, images: Tensor, labels: Tensor, cams) -> Tensor:
        """A baseline's maps, else the CAM method's (from ``cams``, the shared forward pass,
        when given)."""
        if method in self.baselines:
            return self.baselines[method](images, labels)
        if cams is not None:
            return cams[method]
        if method == "cam" and (own := self._own_cam(images, labels)) is not None:
            return own
        return compute_cam(self.classifier, images, method, targets=labels)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images, labels = batch["image"], batch["label"]
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        size = tuple(images.shape[-2:])
        # One forward pass gives the logits and every CAM method's maps of the labels' class,
        # bit for bit what one forward per method gave (compute_cams); a WSOL method's own
        # evaluation map (the reference's ACoL) replaces `cam`'s.
        own = self._own_cam(images, labels) if "cam" in self.methods else None
        cam_methods = [m for m in self.methods if m not in self.baselines]
        cam_methods = [m for m in cam_methods if not (m == "cam" and own is not None)]
        logits, cams = compute_cams(self.classifier, images, cam_methods, targets=labels)
        if own is not None:
            cams["cam"] = own
        for accuracy in self.classification.values():
            accuracy.update(logits, labels)
        confidence, prediction = logits.softmax(1).max(1)
        gt = gt_box_list(batch["box"]) if self.boxes else None
        rows = [
            {"index": i, "label": y, "prediction": p, "probability": q}
            for i, y, p, q in zip(
                batch["index"].tolist(),
                labels.tolist(),
                prediction.tolist(),
                confidence.tolist(),
                strict=True,
            )
        ]
        for method, metrics in zip(self.methods, self.scores, strict=True):
            raw = self._method_maps(method, images, labels, cams)
            maps = cams_to_scoremaps(raw, size)
            metrics.update(maps, logits, labels, boxes=gt, masks=batch.get("mask"))
            if self._scores_faithfulness():
                self._update_faithfulness(method, batch, maps, logits)
            if self._scores_quantus():
                self._update_quantus(method, batch, maps)
            if not self.boxes:
                continue
            for row, scoremap, boxes in zip(rows, maps.numpy(), gt, strict=True):
                row[method] = self._image_record(scoremap, boxes.numpy())
        self.rows.extend(rows)
        if self._scores_sanity():
            keep = batch["index"].to(labels.device) < self.sanity.num_images
            self.sanity.update(images[keep], labels[keep])

    def _image_record(self, scoremap: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
        """V2 IoU curve of one image, its best IoU and the predicted box achieving it."""
        curve = max_iou_curve(scoremap, gt, self.taus, True)
        best = int(np.argmax(curve))
        boxes = boxes_at_threshold(scoremap, float(self.taus[best]), True)
        box = boxes[int(np.argmax(box_iou(boxes, gt).max(axis=1)))]
        return {
            "curve": curve.astype(np.float32),
            "best_iou": float(curve[best]),
            "best_threshold": float(self.taus[best]),
            "box": [int(v) for v in box],
        }

    def enable_faithfulness(self, split: str, **config: Any) -> None:
        """Adds the faithfulness metrics (``camlab.metrics.FaithfulnessMetrics``) of every method
        on ``split`` only (not on a calibration pass); ``config`` = its keyword arguments. The
        pointing game uses the split's boxes, else its masks, else is left out."""
        data = self.datamodule_
        self.faithfulness_gt = (
            "boxes" if data.has_boxes(split) else "masks" if data.has_masks(split) else None
        )
        pointing = self.faithfulness_gt is not None
        self.faithfulness = nn.ModuleList(
            FaithfulnessMetrics(data.num_classes, pointing=pointing, **config) for _ in self.methods
        )
        self.faithfulness_split = split

    def _scores_faithfulness(self) -> bool:
        return self.faithfulness is not None and self.split == self.faithfulness_split

    def _update_faithfulness(self, method: str, batch, maps: Tensor, logits: Tensor) -> None:
        gt = self.faithfulness_gt
        metric = self.faithfulness[self.methods.index(method)]
        metric.update(
            self.classifier, batch["image"], maps, batch["label"], logits,
            boxes=gt_box_list(batch["box"]) if gt == "boxes" else None,
            masks=batch["mask"] if gt == "masks" else None,
        )  # fmt: skip

    def enable_sanity(
        self, split: str, num_images: int = 16, label_steps: int = 0, label_images: int = 256,
        **config: Any,
    ) -> None:  # fmt: skip
        """Adds the sanity checks (``camlab.evaluation.sanity.SanityCheck``) of the CAM methods
        (not the baselines: they do not read the classifier) on ``split``'s first
        ``num_images`` images. With ``label_steps`` > 0 the permuted-label copy is fine-tuned
        on the ``label_images`` images that follow them. ``config``: the check's other
        keyword arguments."""
        label_data = None
        if label_steps > 0:
            dataset = self.datamodule_.dataset(split)
            wanted = range(num_images, min(num_images + label_images, len(dataset)))
            if len(wanted) < 2:
                raise CamlabError(
                    f"sanity.label_steps={label_steps}: the {split} split has {len(dataset)} "
                    f"images, none left after the {num_images} compared ones to fine-tune on "
                    "with permuted labels. Lower sanity.num_images or set sanity.label_steps=0."
                )
            collate = type(self.datamodule_).collate_fn or default_collate
            batch = collate([dataset[i] for i in wanted])
            label_data = (batch["image"], batch["label"])
        methods = [m for m in self.methods if m not in self.baselines]
        self.sanity = SanityCheck(
            self.classifier, methods, num_images=num_images, label_data=label_data,
            label_steps=label_steps, **config,
        )  # fmt: skip
        self.sanity_split = split

    def _scores_sanity(self) -> bool:
        return self.sanity is not None and self.split == self.sanity_split

    def enable_quantus(
        self, split: str, num_images: int = 32, metrics: Sequence[str] | None = None,
        options: dict[str, dict[str, Any]] | None = None, seed: int = 0,
    ) -> None:  # fmt: skip
        """Adds the Quantus-parity metrics (``camlab.metrics.explanation``) of every method on
        ``split``'s first ``num_images`` images. The localisation metrics score against the
        split's masks, else its boxes filled, else are left out."""
        data = self.datamodule_
        self.quantus_gt = (
            "masks" if data.has_masks(split) else "boxes" if data.has_boxes(split) else None
        )
        # Quantus's RandomLogit draws from 1000 classes unless told the model's number.
        options = {name: dict(given or {}) for name, given in (options or {}).items()}
        options.setdefault("random_logit", {}).setdefault("num_classes", data.num_classes)
        self.quantus = nn.ModuleList(
            ExplanationMetrics(metrics, options, masks=self.quantus_gt is not None, seed=seed)
            for _ in self.methods
        )
        self.quantus_split, self.quantus_images = split, num_images

    def _scores_quantus(self) -> bool:
        return self.quantus is not None and self.split == self.quantus_split

    def _update_quantus(self, method: str, batch, maps: Tensor) -> None:
        index = batch["index"]
        keep = (index < self.quantus_images).to(maps.device)
        if not bool(keep.any()):
            return
        images, labels = batch["image"][keep], batch["label"][keep]
        size = tuple(images.shape[-2:])
        masks = None
        if self.quantus_gt == "masks":
            masks = batch["mask"][keep].to(images.device).reshape(len(images), *size) > 0.5
        elif self.quantus_gt == "boxes":
            boxes = gt_box_list(batch["box"])
            masks = box_masks([boxes[i] for i in keep.nonzero()[:, 0].tolist()], size)

        def explain(model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
            # The method on `model` (the classifier, or MPRT's randomised copy), scored as
            # the evaluation scores it: [0, 1] maps at the images' size.
            if method in self.baselines:
                raw = self.baselines[method](x, targets)
            elif model is self.classifier:
                raw = self._method_maps(method, x, targets, None)
            else:
                raw = compute_cam(model, x, method, targets=targets)
            return cams_to_scoremaps(raw, size).to(torch.float32)

        metric = self.quantus[self.methods.index(method)]
        metric.update(
            self.classifier, images, maps[keep].to(torch.float32), labels, masks=masks,
            explain=explain, offset=int(index[keep].min()),
        )  # fmt: skip

    def on_test_epoch_end(self) -> None:
        # compute() all-reduces metric states; every rank must get here (no rank-0-only code).
        classification = {
            name: round(float(m.compute()) * 100, 4) for name, m in self.classification.items()
        }
        results: dict[str, Any] = {}
        for method, metrics in zip(self.methods, self.scores, strict=True):
            out = metrics.compute()
            if self._scores_faithfulness():
                out["faithfulness"] = self.faithfulness[self.methods.index(method)].compute()
            if self._scores_quantus():
                out["quantus"] = self.quantus[self.methods.index(method)].compute()
            results[method] = out
        if self._scores_sanity():
            for method, sanity in self.sanity.compute().items():
                results[method]["sanity"] = sanity
        self.results = {"classification": classification, "methods": results}
        self.rows = gather_rows(self.rows)


def box_masks(boxes: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """``[N, H, W]`` bool: the union of each image's boxes ``[K, 4]`` (x0, y0, x1, y1, inclusive
    ends as the boxes are drawn and scored)."""
    masks = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for mask, image_boxes in zip(masks, boxes, strict=True):
        for x0, y0, x1, y1 in image_boxes.long().tolist():
            mask[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return masks


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-image rows of every rank, in split order (one copy of each image)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    unique = {row["index"]: row for row in rows}
    return [unique[i] for i in sorted(unique)]

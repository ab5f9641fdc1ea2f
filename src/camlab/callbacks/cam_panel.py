"""CAM panels in TensorBoard during training: a fixed set of validation images, every n epochs."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from camlab.callbacks.val_localization import THRESHOLD_KEY, gt_box_list
from camlab.cam import compute_cam, get_method
from camlab.cam.overlay import COLORMAPS, denormalize, draw_boxes, grid, overlay
from camlab.errors import CamlabError
from camlab.metrics import boxes_at_threshold

TARGETS = ("predicted", "ground_truth")
CAPTION_BG = 0
MAX_SCAN = 5000  # most validation items read to find images of every class
FIXED_THRESHOLD = 0.2  # the CAM paper's, for box_threshold="val" before any validation


def select_indices(labels_of, length: int, num_images: int, num_classes: int) -> list[int]:
    """Deterministic pick of ``num_images`` indices spread over the classes.

    Scans the split in index order, keeping at most ``ceil(num_images / num_classes)`` images
    of each class, until enough are kept (or ``MAX_SCAN`` items were read); tops up with the
    first unused indices if some classes are rare. Returns the indices round-robin over classes
    (first image of each class, then the second ones, ...).

    Args:
        labels_of: ``i -> int`` label of item ``i``.
        length: items in the split.
        num_images: how many to pick.
        num_classes: classes.
    """
    n = min(num_images, length)
    quota = max(1, math.ceil(n / max(1, num_classes)))
    per_class: dict[int, list[int]] = {}
    kept = 0
    for i in range(min(length, MAX_SCAN)):
        if kept == n:
            break
        label = int(labels_of(i))
        chosen = per_class.setdefault(label, [])
        if len(chosen) < quota:
            chosen.append(i)
            kept += 1
    order = [
        idx
        for rank in range(quota)
        for label in sorted(per_class)
        if rank < len(per_class[label])
        for idx in [per_class[label][rank]]
    ]
    used = set(order)
    order += [i for i in range(length) if i not in used][: n - len(order)]
    return order


def _label_lookup(dataset) -> Any:
    for attr in ("labels", "targets"):
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return lambda i, v=values: int(v[i])
    return lambda i: int(torch.as_tensor(dataset[i]["label"]))


def caption(tile: Tensor, lines: Sequence[str]) -> Tensor:
    """Appends a black strip with ``lines`` of white text under a uint8 ``[3, H, W]`` tile; the
    text scale fits the tile width, so no pixel of the image itself is covered. The strip's
    height depends only on the number of lines (tiles of one panel stack)."""
    width = tile.shape[-1]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (_, h), base = cv2.getTextSize("Ag", font, scale, 1)
    step = h + base + 2
    widest = max(cv2.getTextSize(t, font, scale, 1)[0][0] for t in lines)
    scale = max(0.2, min(scale, scale * (width - 4) / max(widest, 1)))
    strip = np.full((step * len(lines) + 2, width, 3), CAPTION_BG, np.uint8)
    white = (255, 255, 255)
    for k, text in enumerate(lines):
        cv2.putText(strip, text, (2, k * step + h + 2), font, scale, white, 1, cv2.LINE_AA)
    return torch.cat([tile.cpu(), torch.from_numpy(strip).permute(2, 0, 1)], dim=1)


class CAMPanel(Callback):
    """Logs a grid of CAM overlays of fixed validation images to TensorBoard.

    At the start of training (the untrained network, ``global_step=0``) and after every
    ``every_n_epochs``-th validation epoch (``global_step=epoch + 1``), on global rank 0 only,
    logs one image per method under ``cam/<method>``: each tile is the de-normalised image with
    the CAM (upsampled to the image size, min-max normalised) blended in, the ground-truth boxes
    in green, the box of the largest contour of the CAM above the box threshold in red, and a
    caption with the predicted class, its probability and the true class.

    The default box threshold, ``"val"``, is the one at which MaxBoxAcc peaked on the whole
    validation split in the same epoch (``val/max_box_acc_threshold``, logged by
    ``ValLocalization``): the box a user would deploy. Panels are drawn in
    ``on_validation_end``, after every callback's ``on_validation_epoch_end``, so it is this
    epoch's value; before the first validation, or without ``ValLocalization``, it is 0.2.

    The images are chosen once per run, deterministically and spread over the classes, from
    ``trainer.datamodule.dataset("val")``. The callback leaves training as it was: the model's
    train/eval flags, parameters' ``.grad``, the torch / numpy / Python RNG states and the
    training data loader are untouched, and nothing collective runs (other ranks go on).
    Loggers without ``add_image`` (not TensorBoard) are skipped silently.

    Args:
        methods: CAM methods (``camlab.cam.METHODS``), one image per method.
        num_images: images in the panel.
        target: class whose CAM is shown: ``"predicted"`` (top-1) or ``"ground_truth"``.
        every_n_epochs: log after every n-th epoch's validation (0 = only at the start).
        colormap: OpenCV colour map name.
        alpha: CAM weight in the blend.
        box_threshold: CAM threshold (fraction of its max) of the red box, or ``"val"``.
        nrow: tiles per grid row (default: about the square root of ``num_images``).
        target_layer: layer every method explains (``None`` = the CAM layer); a shallower one,
            e.g. ``"net.features.backbone.layer1"`` with ``layercam``, gives sharper maps
            (the ``"val"`` box threshold stays the one of the CAM layer's maps).
    """

    def __init__(
        self,
        methods: Sequence[str] = ("cam", "gradcam"),
        num_images: int = 16,
        target: str = "predicted",
        every_n_epochs: int = 1,
        colormap: str = "jet",
        alpha: float = 0.5,
        box_threshold: float | str = "val",
        nrow: int | None = None,
        target_layer: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(methods, str):
            methods = (methods,)
        for method in methods:
            get_method(method)  # unknown names fail now, not after an epoch
        if target not in TARGETS:
            raise CamlabError(f"target must be one of {TARGETS}; got '{target}'.")
        if colormap.lower() not in COLORMAPS:
            raise CamlabError(
                f"Unknown colour map '{colormap}'. Valid choices: {', '.join(sorted(COLORMAPS))}."
            )
        if box_threshold != "val" and not (
            isinstance(box_threshold, int | float) and 0 <= box_threshold < 1
        ):
            raise CamlabError(
                f"box_threshold must be 'val' or a number in [0, 1); got {box_threshold!r}."
            )
        if num_images < 1 or every_n_epochs < 0:
            raise CamlabError("num_images must be >= 1 and every_n_epochs >= 0.")
        self.methods = tuple(methods)
        self.num_images = num_images
        self.target = target
        self.every_n_epochs = every_n_epochs
        self.colormap = colormap
        self.alpha = alpha
        self.box_threshold = box_threshold
        self.nrow = nrow
        self.target_layer = target_layer
        self.indices: list[int] | None = None
        self._batch: dict[str, Any] | None = None
        self._logged_steps: set[int] = set()

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._log_panels(trainer, pl_module, step=0)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.every_n_epochs == 0:
            return
        if trainer.state.fn != "fit":
            return
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs == 0:
            self._log_panels(trainer, pl_module, step=epoch + 1)

    # -- work ----------------------------------------------------------------------------------
    def _image_writers(self, trainer: pl.Trainer) -> list[Any]:
        writers = []
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if callable(getattr(experiment, "add_image", None)):
                writers.append(experiment)
        return writers

    def _load(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        if self._batch is not None:
            return True
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "dataset"):
            rank_zero_warn("CAMPanel needs a camlab data module (`dataset('val')`); no panels.")
            return False
        dataset = dm.dataset("val")
        num_classes = len(getattr(dm, "class_names", None) or []) or int(
            getattr(pl_module.hparams, "num_classes", 0) or 1
        )
        self.indices = select_indices(
            _label_lookup(dataset), len(dataset), self.num_images, num_classes
        )
        items = [dataset[i] for i in self.indices]
        mean = getattr(dm, "mean", None) or pl_module.hparams.get("mean")
        std = getattr(dm, "std", None) or pl_module.hparams.get("std")
        names = getattr(dm, "class_names", None) or pl_module.hparams.get("class_names")
        width = max(len(torch.as_tensor(it["box"]).reshape(-1, 4)) for it in items)
        boxes = torch.full((len(items), width, 4), -1, dtype=torch.long)
        for k, it in enumerate(items):
            b = torch.as_tensor(it["box"]).reshape(-1, 4)
            boxes[k, : len(b)] = b
        self._batch = {
            "image": torch.stack([torch.as_tensor(it["image"]) for it in items]).float(),
            "label": torch.tensor([int(torch.as_tensor(it["label"])) for it in items]),
            "boxes": gt_box_list(boxes),
            "mean": tuple(mean) if mean is not None else (0.0,),
            "std": tuple(std) if std is not None else (1.0,),
            "names": list(names) if names is not None else None,
        }
        return True

    def _log_panels(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if step in self._logged_steps:  # several validations in one epoch: log once
            return
        writers = self._image_writers(trainer)
        if not writers:
            return
        device = pl_module.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=cuda):
                if not self._load(trainer, pl_module):
                    return
                panels = self.render(pl_module, self.threshold(trainer))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        for tag, image in panels.items():
            for writer in writers:
                writer.add_image(tag, image, global_step=step, dataformats="CHW")
        self._logged_steps.add(step)

    def threshold(self, trainer: pl.Trainer) -> float:
        """The red box's CAM threshold now (see the class docstring)."""
        if self.box_threshold != "val":
            return float(self.box_threshold)
        value = trainer.callback_metrics.get(THRESHOLD_KEY)
        return FIXED_THRESHOLD if value is None else float(value)

    def render(self, pl_module: pl.LightningModule, box_threshold: float) -> dict[str, Tensor]:
        """``{"cam/<method>": uint8 grid [3, H', W']}`` of the selected images (after loading)."""
        assert self._batch is not None
        batch = self._batch
        images = batch["image"].to(pl_module.device)
        labels = batch["label"].to(pl_module.device)
        size = tuple(images.shape[-2:])
        probs = self._probabilities(pl_module, images)
        conf, pred = probs.max(dim=1)
        targets = pred if self.target == "predicted" else labels
        names = batch["names"]

        def name(k: int) -> str:
            return names[k] if names is not None and k < len(names) else str(k)

        lines = [
            [f"pred {name(int(p))} {float(c):.2f}", f"true {name(int(t))}"]
            for p, c, t in zip(pred.tolist(), conf.tolist(), labels.tolist(), strict=True)
        ]
        base = denormalize(images, batch["mean"], batch["std"])
        nrow = self.nrow or max(1, math.ceil(math.sqrt(len(images))))
        panels = {}
        for method in self.methods:
            maps = compute_cam(
                pl_module, images, method, targets=targets, target_layer=self.target_layer,
                output_size=size, normalize=True,
            ).detach()  # fmt: skip
            tiles = overlay(base, maps, self.alpha, self.colormap).cpu()
            out = []
            for k, tile in enumerate(tiles):
                pred_box = boxes_at_threshold(
                    maps[k].cpu().double().numpy(), box_threshold, multi_contour=False
                )
                pred_box = torch.from_numpy(pred_box) if pred_box.any() else None
                tile = draw_boxes(tile, None, pred_box)
                tile = draw_boxes(tile, batch["boxes"][k], None)  # GT on top, never hidden
                out.append(caption(tile, lines[k]))
            panels[f"cam/{method}"] = grid(torch.stack(out), nrow=nrow)
        return panels

    @staticmethod
    def _probabilities(pl_module: pl.LightningModule, images: Tensor) -> Tensor:
        modes = {m: m.training for m in pl_module.modules()}
        try:
            pl_module.eval()
            with torch.no_grad():
                logits = pl_module(images)
        finally:
            for module, mode in modes.items():
                module.train(mode)
        return logits.float().softmax(dim=1)

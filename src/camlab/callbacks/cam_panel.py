"""CAM panels in TensorBoard during training: a fixed set of validation images, every n epochs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from camlab.callbacks.panel_images import MAX_SCAN, label_lookup, select_indices, stack_items
from camlab.callbacks.panel_layout import (
    CARD_HEIGHT,
    CARD_WIDTH,
    PADDING,
    RED,
    SEPARATOR,
    STYLES,
    WHITE,
    caption,
    card_tags,
    plan_cards,
    resize,
    scale_boxes,
    text_strip,
    tile,
)
from camlab.cam import compute_cam, get_method
from camlab.cam.overlay import COLORMAPS, denormalize, grid
from camlab.errors import CamlabError
from camlab.evalmode import eval_mode
from camlab.metrics import MaxBoxAcc, boxes_at_threshold, cam_thresholds, cams_to_scoremaps
from camlab.protocol import CAM_CURVE_INTERVAL

TARGETS = ("predicted", "ground_truth")
# The CAM paper's threshold, for data without boxes to calibrate a red-box threshold on.
NO_BOX_THRESHOLD = 0.2
CALIBRATION_BATCH = 64


class CAMPanel(Callback):
    """Logs grids of CAMs of fixed validation images to TensorBoard.

    On global rank 0 only, logs the panel of each method under ``cam/<method>`` (one card), or
    split into cards ``cam/<method>/<first>-<last>`` of consecutive tiles: at the start of a
    fresh fit (the untrained network) and after every ``every_n_epochs``-th validation epoch.
    Each image is logged at the step of the scalars Lightning logs at that moment (the
    ``val/*`` scalars of the same validation, 0 before training), so image cards and charts
    share one step axis. A fit resumed from a checkpoint logs no start panel: the restored
    network was logged by the run that trained it, and a second step-0 image would be read as
    the untrained one.

    A tile shows the de-normalised image and the CAM of ``target``'s class as a score map of the
    wsolevaluation protocol (bicubic to the image size, min-max), as ``style``: ``side_by_side``
    (the image alone | the CAM blended over it), ``overlay`` (blended only) or ``contour``
    (iso-lines of the CAM at 0.2, 0.4, 0.6, 0.8 over the image). Green: ground-truth boxes;
    red: the box of the largest contour of the score map above the method's threshold. The
    caption gives the predicted class, its probability and the true class, in red when the
    prediction is wrong; a header names the method and its red-box threshold.

    ``box_threshold="val"`` (default): each method's own threshold, where its MaxBoxAcc (v1:
    largest contour, IoU >= 50) peaks on the first ``calibration_images`` validation images,
    with ground-truth-class maps as the protocol does, recomputed at every panel. With
    ``calibration_images=None`` (the whole split) and ``ValLocalization``'s
    ``cam_curve_interval`` the ``cam`` panel's threshold equals ``val/max_box_acc_threshold``.
    A number fixes the threshold for every method.

    Each card is laid out to be read as TensorBoard shows it, without a click: at most
    ``card_width`` (the IMAGES tab's 350 px card) by ``card_height`` pixels (the 215 px an image
    gets in a TIME SERIES card, TensorBoard's landing page, at any window size). A card holds as
    many tiles as fit with tiles of at least ``panel_layout.MIN_TILE`` pixels; the rest go on
    more cards (16 side-by-side 84 px digits: 3 cards of 3 x 2 tiles). Each card is padded with
    black to exactly that size, which both pages show 1:1.

    Images are chosen once per run, deterministically and stratified by class, from
    ``trainer.datamodule.dataset("val")``. The callback leaves training as it was: the model's
    train/eval flags, parameters' ``.grad``, the torch / numpy / Python RNG states and the
    training data loader are untouched, and nothing collective runs (other ranks go on).
    Loggers without ``add_image`` (not TensorBoard) are skipped silently.

    Args:
        methods: CAM methods (``camlab.cam.CAM_METHODS``), one image per method.
        num_images: images in the panel.
        target: class whose CAM is shown: ``"predicted"`` (top-1) or ``"ground_truth"``.
        every_n_epochs: log after every n-th epoch's validation (0 = only at the start).
        colormap: OpenCV colour map name.
        alpha: CAM weight in the blend.
        style: ``"side_by_side"``, ``"overlay"`` or ``"contour"``.
        box_threshold: ``"val"`` or a CAM threshold in [0, 1) for the red box.
        calibration_images: validation images that calibrate ``"val"`` (``None``: all).
        cam_curve_interval: threshold grid step of that calibration.
        card_width: card width limit in pixels (``None``: one card, tiles at full size, square
            grid).
        card_height: card height limit in pixels, header included (``None``: one card of all
            tiles, at most 1024 px tall, the layout for the IMAGES tab alone).
        nrow: tiles per grid row (one card; default: chosen with the limits).
        target_layer: layer every method explains (``None`` = the CAM layer); a shallower one,
            e.g. ``"net.features.backbone.layer1"`` with ``layercam``, gives sharper maps.
    """

    def __init__(
        self,
        methods: Sequence[str] = ("cam", "gradcam"),
        num_images: int = 16,
        target: str = "predicted",
        every_n_epochs: int = 1,
        colormap: str = "jet",
        alpha: float = 0.5,
        style: str = "side_by_side",
        box_threshold: float | str = "val",
        calibration_images: int | None = 128,
        cam_curve_interval: float = CAM_CURVE_INTERVAL,
        card_width: int | None = CARD_WIDTH,
        card_height: int | None = CARD_HEIGHT,
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
        if style not in STYLES:
            raise CamlabError(f"style must be one of {STYLES}; got '{style}'.")
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
        if calibration_images is not None and calibration_images < 1:
            raise CamlabError("calibration_images must be >= 1, or null for the whole split.")
        self.methods = tuple(methods)
        self.num_images = num_images
        self.target = target
        self.every_n_epochs = every_n_epochs
        self.colormap = colormap
        self.alpha = alpha
        self.style = style
        self.box_threshold = box_threshold
        self.calibration_images = calibration_images
        cam_thresholds(cam_curve_interval)  # a bad step fails now, not after an epoch
        self.cam_curve_interval = cam_curve_interval
        self.card_width = card_width
        self.card_height = card_height
        self.nrow = nrow
        self.target_layer = target_layer
        self.indices: list[int] | None = None
        self.thresholds: dict[str, float] = {}  # each method's red-box threshold, last panel
        self._batch: dict[str, Any] | None = None
        self._calibration: dict[str, Any] | None = None
        self._logged_steps: set[int] = set()

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if trainer.global_step > 0 or getattr(trainer, "ckpt_path", None):
            return  # resumed: the restored network is not the untrained one (see docstring)
        self._log_panels(trainer, pl_module, step=0)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.every_n_epochs == 0:
            return
        if trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log_panels(trainer, pl_module, step=logger_step(trainer))

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
        labels_of, cheap = label_lookup(dataset)
        self.indices = select_indices(
            labels_of, len(dataset), self.num_images, num_classes, None if cheap else MAX_SCAN
        )
        mean = getattr(dm, "mean", None) or pl_module.hparams.get("mean")
        std = getattr(dm, "std", None) or pl_module.hparams.get("std")
        names = getattr(dm, "class_names", None) or pl_module.hparams.get("class_names")
        self._batch = {
            **stack_items([dataset[i] for i in self.indices]),
            "mean": tuple(mean) if mean is not None else (0.0,),
            "std": tuple(std) if std is not None else (1.0,),
            "names": list(names) if names is not None else None,
        }
        has_boxes = getattr(dm, "has_boxes", None)
        # Mask-only data (OpenImages) has no boxes to calibrate on: the fixed CAM-paper threshold.
        if self.box_threshold == "val" and (has_boxes is None or has_boxes("val")):
            count = len(dataset) if self.calibration_images is None else self.calibration_images
            self._calibration = stack_items([dataset[i] for i in range(min(count, len(dataset)))])
        return True

    def _log_panels(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if step in self._logged_steps:  # several validations at one step: log once
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
                panels = self.render(pl_module)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        for tag, image in panels.items():
            for writer in writers:
                writer.add_image(tag, image, global_step=step, dataformats="CHW")
        self._logged_steps.add(step)

    def _scoremaps(self, pl_module: pl.LightningModule, images: Tensor, method: str, targets):
        """Protocol score maps ``[B, H, W]`` (float64, CPU, in [0, 1]) of ``method``.

        ``cam`` of a model whose WSOL method has its own evaluation map (the reference's ACoL:
        both branches) shows that map, as the validation metrics and evaluate.py score it.
        """
        own = getattr(pl_module, "evaluation_cam", None)
        cams = None
        if method == "cam" and self.target_layer is None and own is not None:
            cams = own(images, torch.as_tensor(targets, device=images.device))
        if cams is None:
            cams = compute_cam(
                pl_module, images, method, targets=targets, target_layer=self.target_layer
            )
        cams = cams.detach()
        return cams_to_scoremaps(cams.float(), tuple(images.shape[-2:]))

    def calibrate(self, pl_module: pl.LightningModule, method: str) -> float:
        """``method``'s CAM threshold where MaxBoxAcc v1 peaks on the calibration images."""
        assert self._calibration is not None
        cal = self._calibration
        # Rank 0 alone runs this: a torchmetrics compute() would all-gather and hang DDP.
        metric = MaxBoxAcc(
            self.cam_curve_interval, (50,), multi_contour=False, sync_on_compute=False
        )
        for start in range(0, len(cal["image"]), CALIBRATION_BATCH):
            part = slice(start, start + CALIBRATION_BATCH)
            images = cal["image"][part].to(pl_module.device)
            labels = cal["label"][part].to(pl_module.device)
            metric.update(self._scoremaps(pl_module, images, method, labels), cal["boxes"][part])
        return float(metric.compute()["best_threshold@50"])

    def threshold(self, pl_module: pl.LightningModule, method: str) -> tuple[float, str]:
        """``(threshold, how it was chosen)`` of ``method``'s red box (after loading)."""
        if self.box_threshold != "val":
            return float(self.box_threshold), "fixed"
        if self._calibration is None:
            return NO_BOX_THRESHOLD, "fixed: val has no boxes"
        n = len(self._calibration["image"])
        return self.calibrate(pl_module, method), f"best MaxBoxAcc, {n} val images"

    def render(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """``{tag: uint8 card [3, H', W']}`` of the selected images (after loading), tags from
        ``card_tags`` in tile order for each method; sets ``self.thresholds``."""
        assert self._batch is not None
        batch = self._batch
        images = batch["image"].to(pl_module.device)
        labels = batch["label"].to(pl_module.device)
        height, width = images.shape[-2:]
        probs = self._probabilities(pl_module, images)
        conf, pred = probs.max(dim=1)
        targets = pred if self.target == "predicted" else labels
        names = batch["names"]

        def name(k: int) -> str:
            return names[k] if names is not None and k < len(names) else str(k)

        captions = [
            ([f"pred {name(p)} {c:.2f}", f"true {name(t)}"], WHITE if p == t else RED)
            for p, c, t in zip(pred.tolist(), conf.tolist(), labels.tolist(), strict=True)
        ]
        caption_h = text_strip(8, ["a", "b"]).shape[1]
        header_h = text_strip(8, ["a"]).shape[1]
        halves = 2 if self.style == "side_by_side" else 1
        unit_w = halves * width + (halves - 1) * SEPARATOR
        per_card, ncols, scale = plan_cards(
            len(images), unit_w, height, caption_h, header_h, self.card_width, self.card_height,
            self.nrow,
        )  # fmt: skip
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        base = denormalize(images, batch["mean"], batch["std"]).cpu()
        base = resize(base, size)
        panels = {}
        self.thresholds = {}
        for method in self.methods:
            tau, how = self.threshold(pl_module, method)
            self.thresholds[method] = tau
            maps = self._scoremaps(pl_module, images, method, targets)
            shown = resize(maps[:, None].float(), size)[:, 0].clamp(0, 1)
            out = []
            for k in range(len(images)):
                box = boxes_at_threshold(maps[k].numpy(), tau, multi_contour=False)
                pred_box = scale_boxes(torch.from_numpy(box), scale) if box.any() else None
                gt_box = scale_boxes(batch["boxes"][k], scale)
                picture = tile(base[k], shown[k], gt_box, pred_box, self.style, self.alpha,
                               self.colormap)  # fmt: skip
                out.append(caption(picture, *captions[k]))
            tags = card_tags(f"cam/{method}", len(out), per_card)
            for start, tag in zip(range(0, len(out), per_card), tags, strict=True):
                card = grid(torch.stack(out[start : start + per_card]), nrow=ncols, padding=PADDING)
                head = text_strip(card.shape[-1], [f"{method}: red box at {tau:.2f} ({how})"])
                panels[tag] = self._fill_card(torch.cat([head, card], dim=1))
        return panels

    def _fill_card(self, card: Tensor) -> Tensor:
        """Pads a card with black to exactly ``card_width`` x ``card_height`` (when both limits
        hold, without ``nrow``): TensorBoard scales every image to its card, the IMAGES tab to
        350 px wide and TIME SERIES to 215 px high (pixelated), so a card of exactly that size
        is shown 1:1 on both."""
        if self.card_width is None or self.card_height is None or self.nrow is not None:
            return card
        right = max(0, self.card_width - card.shape[-1])
        bottom = max(0, self.card_height - card.shape[-2])
        return F.pad(card, (0, right, 0, bottom))

    @staticmethod
    def _probabilities(pl_module: pl.LightningModule, images: Tensor) -> Tensor:
        with eval_mode(pl_module):
            logits = pl_module(images)
        return logits.float().softmax(dim=1)


def logger_step(trainer: pl.Trainer) -> int:
    """The step Lightning's loggers write scalars at now (its ``_batches_that_stepped``; at an
    epoch's end, the ``val/*`` and epoch scalars' step), falling back to ``global_step``."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    return int(trainer.global_step if step is None else step)

"""Shared pieces of the callback tests: a tiny fit and an offline evaluation of the metrics."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from camlab.callbacks import CAMPanel, EpochSummary, ValLocalization
from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.metrics import LocalizationAccuracy, MaxBoxAcc, cams_to_scoremaps

METHODS = ("cam", "gradcam")


def make_data() -> ShapesDataModule:
    return ShapesDataModule(
        image_size=64, train_size=64, val_size=32, test_size=8, num_workers=0, batch_size=16
    )


def make_model(dm: ShapesDataModule) -> GAPClassifier:
    return GAPClassifier(
        backbone="resnet18",
        num_classes=4,
        in_channels=3,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        mean=dm.mean,
        std=dm.std,
        class_names=dm.class_names,
    )


def fit(
    root: Path, freeze_bn_stats: bool = False, **trainer_kwargs
) -> tuple[pl.Trainer, GAPClassifier]:
    """Two epochs on tiny shapes with the camlab callbacks, TensorBoard in ``root/tb/run``,
    the Python log in ``root/train.log`` (as Hydra's job logging writes it).

    ``freeze_bn_stats``: BatchNorm running statistics stay at their initial values. Under DDP
    each rank otherwise ends training with the statistics of its own last batch (DDP broadcasts
    rank 0's buffers only before training forwards), so rank 1 would validate a slightly
    different network than the checkpoint that rank 0 saves.
    """
    pl.seed_everything(0)
    dm = make_data()
    model = make_model(dm)
    if freeze_bn_stats:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.0
    checkpoint = ModelCheckpoint(
        dirpath=root / "ckpt", monitor="val/max_box_acc_v2", mode="max", save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=TensorBoardLogger(root / "tb", name="run", version=""),
        # ModelCheckpoint first on purpose: Lightning moves it after the others.
        callbacks=[checkpoint, CAMPanel(methods=METHODS), ValLocalization(), EpochSummary()],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **trainer_kwargs,
    )
    handler = logging.FileHandler(root / "train.log")
    summary_log = logging.getLogger("camlab.callbacks.epoch_summary")
    summary_log.addHandler(handler)
    summary_log.setLevel(logging.INFO)
    try:
        trainer.fit(model, dm)
    finally:
        summary_log.removeHandler(handler)
        handler.close()
    return trainer, model


def offline_metrics(checkpoint: Path, dm: ShapesDataModule) -> dict[str, float]:
    """The validation numbers from a checkpoint, computed outside Lightning (percent, but the
    threshold); Top-1 / GT-known Loc at the best threshold by a second, fixed-threshold pass."""
    model = GAPClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    v2, v1 = MaxBoxAcc(0.01), MaxBoxAcc(0.01, (50,), multi_contour=False)
    loc = LocalizationAccuracy(0.2, 0.5, topk=(1,))
    logits, labels, maps, boxes = [], [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits.append(model(batch["image"]))
            labels.append(batch["label"])
            cams = compute_cam(model, batch["image"], "cam", targets=batch["label"])
            maps.append(cams_to_scoremaps(cams, tuple(batch["image"].shape[-2:])))
            boxes += [b[b[:, 0] >= 0] for b in batch["box"]]
    logits, labels, maps = torch.cat(logits), torch.cat(labels), torch.cat(maps)
    v2.update(maps, boxes)
    v1.update(maps, boxes)
    loc.update(logits, labels, maps, boxes)
    out, v1_out = loc.compute(), v1.compute()
    tau = float(v1_out["best_threshold@50"])
    at_best = LocalizationAccuracy(tau, 0.5, topk=(1,))
    at_best.update(logits, labels, maps, boxes)
    best = at_best.compute()
    return {
        "val/loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "val/acc": float((logits.argmax(1) == labels).double().mean() * 100),
        "val/max_box_acc_v2": float(v2.compute()["max_box_acc"]),
        "val/max_box_acc": float(v1_out["max_box_acc"]),
        "val/max_box_acc_threshold": tau,
        "val/top1_loc": float(out["top1_loc"]),
        "val/gt_known_loc": float(out["gt_known_loc"]),
        "val/top1_loc_at_best_tau": float(best["top1_loc"]),
        "val/gt_known_loc_at_best_tau": float(best["gt_known_loc"]),
    }


def read_events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def decode(event) -> np.ndarray:
    """An image event -> uint8 RGB [H, W, 3]."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(event.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    return bgr[..., ::-1]

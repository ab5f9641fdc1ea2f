"""The ``fullsup`` (FSL) baseline of Choe et al. (CVPR 2020): a foreground model trained, by a
Lightning ``Trainer`` like the evaluation's (same devices and precision), on the localization
labels of the small ``train-fullsup`` (val) split.

It is a backbone plus a 1x1 conv giving a foreground logit map, trained with pixel-wise BCE on the
split's masks (or its boxes filled as masks); its sigmoid map is the score map. Choe et al. find
it beats every WSOL method they tried.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from camlab.data.base import LocalizationDataModule
from camlab.errors import CamlabError
from camlab.models.network import build_network

log = logging.getLogger(__name__)
INITS = ("auto", "checkpoint", "imagenet", "scratch")
TARGETS = ("auto", "mask", "box")


class FullSupSaliency(nn.Module):
    """``fullsup``: backbone feature maps -> 1x1 conv -> one foreground logit per cell.

    The map comes from the same layer and resolution as the CAM of the evaluated classifier, so
    a gain over CAM measures the localization labels, not a finer feature map.

    Args:
        features: images ``[B, C, H, W]`` -> feature maps ``[B, D, h, w]``.
        feature_dim: ``D``.
    """

    def __init__(self, features: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Conv2d(feature_dim, 1, kernel_size=1)

    def logits(self, images: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` -> foreground logits ``[B, h, w]``."""
        return self.head(self.features(images))[:, 0]

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images ``[B, C, H, W]`` -> foreground probabilities ``[B, h, w]`` (class-agnostic)."""
        return torch.sigmoid(self.logits(images).float())


def resolve_init(classifier: nn.Module, init: str) -> str:
    """``auto``: the classifier's own starting point, ``imagenet`` if it was trained from
    torchvision's ImageNet weights, else ``scratch`` (the baseline then differs from the WSOL
    model only in its labels: val's boxes or masks instead of train's classes)."""
    if init not in INITS:
        raise CamlabError(f"baselines.fullsup.init={init!r}: valid choices {', '.join(INITS)}.")
    if init == "auto":
        return "imagenet" if classifier.hparams.get("pretrained") else "scratch"
    return init


def build_fullsup(classifier: nn.Module, init: str) -> FullSupSaliency:
    """A ``FullSupSaliency`` with the classifier's architecture (``GAPClassifier``).

    Args:
        classifier: the evaluated ``GAPClassifier``.
        init: ``checkpoint`` (a copy of its trained feature layers), ``imagenet`` (torchvision's
            ImageNet weights, the reference's starting point), ``scratch``, or ``auto``
            (``resolve_init``).
    """
    init = resolve_init(classifier, init)
    net = classifier.net
    if init == "checkpoint":
        return FullSupSaliency(copy.deepcopy(net.features), net.classifier.in_features)
    hp = classifier.hparams
    # The classifier's own network family and map size (reference, timm or torchvision).
    fresh = build_network(
        hp.get("arch", "torchvision"), hp.backbone, 1, hp.in_channels, init == "imagenet",
        hp.hires_cam, hp.get("large_feature_map", False), hp.get("image_size"),
    )  # fmt: skip
    return FullSupSaliency(fresh.features, fresh.classifier.in_features)


def foreground_targets(batch: dict[str, Tensor], use_masks: bool) -> tuple[Tensor, Tensor]:
    """Pixel targets of a batch: the mask, or the union of the boxes filled in.

    Args:
        batch: ``image`` ``[B, C, H, W]``, ``box`` ``[B, K, 4]`` (inclusive, ``-1`` rows pad), and
            ``mask`` ``[B, H, W]`` (1 object, 0 background, 255 ignored) when ``use_masks``.
        use_masks: train on masks rather than boxes.

    Returns:
        ``(target, weight)``, float ``[B, H, W]`` each: 1 = foreground, and 0 on ignored pixels.
    """
    height, width = batch["image"].shape[-2:]
    if use_masks:
        mask = batch["mask"]
        return (mask == 1).float(), (mask != 255).float()
    boxes = batch["box"].reshape(len(batch["image"]), -1, 4).to(batch["image"].device)
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))  # [B, K, 1, 1]
    ys = torch.arange(height, device=boxes.device)[:, None]
    xs = torch.arange(width, device=boxes.device)[None, :]
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) & (x0 >= 0)  # [B, K, H, W]
    target = inside.any(dim=1).float()
    return target, torch.ones_like(target)


def fullsup_loss(model: FullSupSaliency, batch: dict[str, Tensor], use_masks: bool) -> Tensor:
    """Pixel-wise BCE of the logit map, upsampled bilinearly to the image, over unignored pixels."""
    images = batch["image"]
    target, weight = foreground_targets(batch, use_masks)
    logits = F.interpolate(
        model.logits(images)[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
    )[:, 0]
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), target, weight=weight, reduction="sum"
    )
    return loss / weight.sum().clamp(min=1)


def flip_batch(batch: dict[str, Tensor], flip: Tensor, use_masks: bool) -> dict[str, Tensor]:
    """Mirrors the images ``flip`` ``[B]`` selects, with their masks or boxes."""
    out = dict(batch)
    sel = flip[:, None, None, None]
    out["image"] = torch.where(sel, batch["image"].flip(-1), batch["image"])
    if use_masks:
        out["mask"] = torch.where(sel[:, 0], batch["mask"].flip(-1), batch["mask"])
    else:
        width = batch["image"].shape[-1]
        box = batch["box"].reshape(len(flip), -1, 4)
        mirrored = torch.stack(
            [width - 1 - box[..., 2], box[..., 1], width - 1 - box[..., 0], box[..., 3]], -1
        )
        mirrored = torch.where(box[..., :1] >= 0, mirrored, box)  # padding rows stay -1
        out["box"] = torch.where(flip[:, None, None], mirrored, box)
    return out


class FullSupTraining(pl.LightningModule):
    """Trains a ``FullSupSaliency``: AdamW, cosine decay per step, random horizontal flips.

    Args:
        model: the network to train.
        use_masks: pixel targets from masks (else from the boxes filled in).
        lr, weight_decay: AdamW's; the head learns at ``lr``.
        features_lr: the feature layers' learning rate.
        hflip: random horizontal flips of image and target.
        seed: the flips' generator (on the CPU, so every DDP process draws the same ones).
    """

    def __init__(
        self,
        model: FullSupSaliency,
        use_masks: bool,
        lr: float,
        features_lr: float,
        weight_decay: float,
        hflip: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.model = model
        self.use_masks, self.hflip = use_masks, hflip
        self.lr, self.features_lr, self.weight_decay = lr, features_lr, weight_decay
        self.flips = torch.Generator().manual_seed(seed)
        self.epoch_loss: list[float] = []
        self._sum, self._count = 0.0, 0

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        n = len(batch["image"])
        if self.hflip:
            flip = torch.rand(n, generator=self.flips) < 0.5
            batch = flip_batch(batch, flip.to(self.device), self.use_masks)
        loss = fullsup_loss(self.model, batch, self.use_masks)
        self._sum += float(loss.detach()) * n
        self._count += n
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_loss.append(self._sum / max(self._count, 1))
        self._sum, self._count = 0.0, 0
        log.info("fullsup epoch %d: BCE %.4f", len(self.epoch_loss), self.epoch_loss[-1])

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [
            {"params": list(self.model.head.parameters()), "lr": self.lr},
            {"params": list(self.model.features.parameters()), "lr": self.features_lr},
        ]
        optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def fullsup_trainer_settings(epochs: int) -> dict[str, Any]:
    """Overrides that turn the evaluation's trainer config into the one that trains ``fullsup``.

    Every DDP process loads the whole split in the same order (no distributed sampler), so the
    averaged gradient is each process's own and N processes train what one trains; for the
    same reason synchronised batch norm would change nothing (and torch refuses it on the CPU).
    """
    return {
        "max_epochs": int(epochs),
        "min_epochs": None,
        "max_steps": -1,
        "limit_train_batches": 1.0,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "accumulate_grad_batches": 1,
        "use_distributed_sampler": False,
        "sync_batchnorm": False,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": False,
        "callbacks": [],
    }


def train_fullsup(
    classifier: nn.Module,
    datamodule: LocalizationDataModule,
    split: str = "val",
    init: str = "auto",
    target: str = "auto",
    epochs: int = 10,
    batch_size: int | None = None,
    lr: float = 1e-3,
    backbone_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    hflip: bool = True,
    seed: int = 0,
    trainer: pl.Trainer | None = None,
) -> tuple[FullSupSaliency, dict[str, Any]]:
    """Trains the FSL baseline on the localization labels of ``split``; returns it in eval mode.

    Args:
        classifier: the evaluated ``GAPClassifier`` (architecture, and weights for
            ``init=checkpoint``).
        datamodule: the data; ``split`` must have boxes or masks.
        split: the fully supervised split (the reference's ``train-fullsup``: val).
        init: see ``build_fullsup``.
        target: ``mask``, ``box``, or ``auto`` (masks when the split has them).
        epochs, batch_size, lr, weight_decay: AdamW schedule (cosine decay over all steps);
            ``batch_size`` None = the data module's.
        backbone_lr_mult: learning-rate factor of pretrained feature layers (not for scratch).
        hflip: random horizontal flips of image and target.
        seed: initialisation, shuffling and flips (the global RNG is left as it was).
        trainer: a Trainer built with ``fullsup_trainer_settings(epochs)`` (None: one on the CPU).

    Returns:
        ``(model, info)``; ``info`` has ``split``, ``num_images``, ``target``, ``init``,
        ``steps`` and ``epoch_loss`` (mean BCE per epoch).
    """
    init = resolve_init(classifier, init)
    if target not in TARGETS:
        raise CamlabError(
            f"baselines.fullsup.target={target!r}: valid choices {', '.join(TARGETS)}."
        )
    has_masks, has_boxes = datamodule.has_masks(split), datamodule.has_boxes(split)
    use_masks = has_masks if target == "auto" else target == "mask"
    if (use_masks and not has_masks) or not (use_masks or has_boxes):
        what = "pixel masks" if use_masks or target == "auto" else "boxes"
        raise CamlabError(
            f"The fullsup baseline trains on the localization labels of the {split} split, but "
            f"it has no {what}. Use a split with boxes or masks "
            f"(baselines.fullsup.train_split=val) or another baselines.fullsup.target."
        )
    dataset = datamodule.dataset(split)
    loader = DataLoader(
        dataset,
        batch_size=batch_size or datamodule.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=0,  # a few dozen to a few thousand images: workers would cost more
        collate_fn=type(datamodule).collate_fn,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_fullsup(classifier, init)
    module = FullSupTraining(
        model, use_masks, lr, lr if init == "scratch" else lr * backbone_lr_mult, weight_decay,
        hflip, seed,
    )  # fmt: skip
    if trainer is None:
        trainer = pl.Trainer(accelerator="cpu", devices=1, **fullsup_trainer_settings(epochs))
    trainer.fit(module, train_dataloaders=loader)
    info = {
        "split": split,
        "num_images": len(dataset),
        "target": "mask" if use_masks else "box",
        "init": init,
        "steps": int(trainer.global_step),
        "epoch_loss": module.epoch_loss,
    }
    return model.eval(), info

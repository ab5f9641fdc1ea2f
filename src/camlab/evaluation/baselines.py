"""The sanity rows of a WSOL results table (Choe et al., CVPR 2020): ``center`` and ``fullsup``.

Both are selected in ``cam.methods`` beside the CAM methods and are scored with the same score-map
protocol (bicubic to the image size, min-max) and the same metrics:

- ``center``: an isotropic Gaussian at the image centre, the same for every image and class. A
  WSOL method that does not beat it has learned nothing about *where* objects are beyond the
  photographer's bias to centre them.
- ``fullsup``: the paper's few-shot (FSL) baseline: a fully supervised foreground model trained
  on the localization labels of the small ``train-fullsup`` (val) split, which the WSOL protocol
  allows only for choosing hyper-parameters. It is a backbone plus a 1x1 conv giving a foreground
  logit map, trained with pixel-wise BCE on the split's masks (or its boxes filled as masks); its
  sigmoid map is the score map. Choe et al. find it beats every WSOL method they tried.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from camlab.cam import get_method
from camlab.data.base import LocalizationDataModule
from camlab.errors import CamlabError
from camlab.models.backbones import build_gapnet

log = logging.getLogger(__name__)
BASELINES = ("center", "fullsup")
INITS = ("auto", "checkpoint", "imagenet", "scratch")
TARGETS = ("auto", "mask", "box")


def check_method(name: str) -> None:
    """A CAM method of ``camlab.cam`` or a baseline; an unknown name lists both.

    Raises:
        CamlabError: unknown name.
    """
    if name in BASELINES:
        return
    try:
        get_method(name)
    except CamlabError as err:
        raise CamlabError(f"{err} Baselines: {', '.join(BASELINES)}.") from None


def center_gaussian(height: int, width: int, sigma: float) -> Tensor:
    """An isotropic Gaussian centred on the image, before min-max normalisation.

    The centre is ((W - 1) / 2, (H - 1) / 2) in pixel coordinates (between two pixels on an even
    side), the standard deviation ``sigma * W`` along x and ``sigma * H`` along y (isotropic on
    the reference's square S x S frame).

    Args:
        height, width: map size.
        sigma: standard deviation as a fraction of the side.

    Returns:
        float64 ``[height, width]``, 1 at the centre (when it is a pixel).
    """
    if not sigma > 0:
        raise CamlabError(f"baselines.center.sigma={sigma} must be > 0 (a fraction of the side).")
    y = (torch.arange(height, dtype=torch.float64) - (height - 1) / 2) / (sigma * height)
    x = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) / (sigma * width)
    return torch.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


class CenterBaseline(nn.Module):
    """``center``: the same Gaussian for every image; needs no model.

    Min-max normalisation removes its scale, and every threshold of it is a centred disc, so the
    width only decides which disc radii the threshold grid (and the uint8 quantisation) can reach.

    Args:
        sigma: standard deviation as a fraction of the side.
    """

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        center_gaussian(1, 1, sigma)  # checks sigma now, not at the first batch
        self.sigma = sigma

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images ``[B, C, H, W]`` -> maps ``[B, H, W]`` (float64, on the images' device)."""
        height, width = images.shape[-2:]
        gauss = center_gaussian(height, width, self.sigma).to(images.device)
        return gauss.expand(len(images), -1, -1)


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
    fresh = build_gapnet(hp.backbone, 1, hp.in_channels, init == "imagenet", hp.hires_cam)
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
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    return loss / weight.sum().clamp(min=1)


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
    device: str | torch.device = "cpu",
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
        device: where to train.

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
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size or datamodule.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=0,  # a few dozen to a few thousand images: workers would cost more
        collate_fn=type(datamodule).collate_fn,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_fullsup(classifier, init).to(device)
    new = list(model.head.parameters())
    groups = [{"params": new, "lr": lr}]
    groups.append(
        {
            "params": list(model.features.parameters()),
            "lr": lr if init == "scratch" else lr * backbone_lr_mult,
        }
    )
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    steps = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
    )
    model.train()
    epoch_loss = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
            if hflip:
                flip = torch.rand(len(batch["image"]), generator=generator).to(device) < 0.5
                batch = _flip(batch, flip, use_masks)
            loss = fullsup_loss(model, batch, use_masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch["image"])
            count += len(batch["image"])
        epoch_loss.append(total / count)
        log.info("fullsup epoch %d/%d: BCE %.4f", epoch + 1, epochs, epoch_loss[-1])
    info = {
        "split": split,
        "num_images": len(dataset),
        "target": "mask" if use_masks else "box",
        "init": init,
        "steps": steps,
        "epoch_loss": epoch_loss,
    }
    return model.eval(), info


def _flip(batch: dict[str, Tensor], flip: Tensor, use_masks: bool) -> dict[str, Tensor]:
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


def fullsup_device(trainer_cfg: Any) -> torch.device:
    """The device the evaluation trainer will use: this process's GPU unless it runs on CPU."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("cpu",) or not torch.cuda.is_available():
        return torch.device("cpu")
    # Under DDP every process trains its own copy on its own GPU (rank 0's is scored everywhere).
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def build_baselines(
    methods: Sequence[str],
    cfg: Any,
    classifier: nn.Module,
    datamodule: LocalizationDataModule,
    scored_split: str,
    seed: int,
    device: torch.device,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The baseline modules ``methods`` names (``fullsup`` trained now), and what to report.

    Args:
        methods: ``cam.methods``.
        cfg: the ``baselines`` config node (``center.sigma``, ``fullsup.*``).
        classifier, datamodule: as for ``CamEvaluation``.
        scored_split: the split being scored; ``fullsup`` must not train on it.
        seed: the run's seed.
        device: where ``fullsup`` trains.

    Returns:
        ``({name: module}, {name: info})``.
    """
    modules: dict[str, nn.Module] = {}
    info: dict[str, Any] = {}
    if "center" in methods:
        modules["center"] = CenterBaseline(float(cfg.center.sigma))
        info["center"] = {"sigma": float(cfg.center.sigma)}
    if "fullsup" in methods:
        fs = cfg.fullsup
        if fs.train_split == scored_split:
            raise CamlabError(
                f"baselines.fullsup.train_split={fs.train_split} is the split being scored "
                f"(split={scored_split}): the baseline would be tested on its training images. "
                "Train it on val and score test (the defaults)."
            )
        model, info["fullsup"] = train_fullsup(
            classifier, datamodule, split=fs.train_split, init=fs.init, target=fs.target,
            epochs=int(fs.epochs), batch_size=fs.batch_size, lr=float(fs.lr),
            backbone_lr_mult=float(fs.backbone_lr_mult), weight_decay=float(fs.weight_decay),
            hflip=bool(fs.hflip), seed=seed, device=device,
        )  # fmt: skip
        modules["fullsup"] = model.cpu()  # Lightning moves it with the evaluation module
    return modules, info

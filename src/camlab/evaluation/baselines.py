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

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from camlab.cam import get_method
from camlab.data.base import LocalizationDataModule
from camlab.errors import CamlabError
from camlab.evaluation.fullsup import train_fullsup

BASELINES = ("center", "fullsup")


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


def build_baselines(
    methods: Sequence[str],
    cfg: Any,
    classifier: nn.Module,
    datamodule: LocalizationDataModule,
    scored_split: str,
    seed: int,
    trainer: pl.Trainer | None = None,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The baseline modules ``methods`` names (``fullsup`` trained now), and what to report.

    Args:
        methods: ``cam.methods``.
        cfg: the ``baselines`` config node (``center.sigma``, ``fullsup.*``).
        classifier, datamodule: as for ``CamEvaluation``.
        scored_split: the split being scored; ``fullsup`` must not train on it.
        seed: the run's seed.
        trainer: what trains ``fullsup`` (``fullsup_trainer_settings`` over the evaluation's
            trainer config: same devices and precision); None = one CPU process.

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
            hflip=bool(fs.hflip), seed=seed, trainer=trainer,
        )  # fmt: skip
        modules["fullsup"] = model.cpu()  # Lightning moves it with the evaluation module
    return modules, info

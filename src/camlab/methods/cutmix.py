"""CutMix (Yun et al., ICCV 2019): a box of another image pasted in, labels mixed by area."""

import math

import torch
from torch import Tensor

from camlab.methods.base import Criterion, WSOLMethod
from camlab.models.gap import GAPNet


def cut_box(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The box CutMix cuts for a mixing ratio ``lam`` centred at ``(cy, cx)``, as the
    reference's ``rand_bbox``: sides ``int(H * sqrt(1 - lam))`` and ``int(W * sqrt(1 - lam))``,
    half of each (floored) on either side of the centre, clipped to the image.

    Returns:
        ``(y0, y1, x0, x1)``, end-exclusive: the box is ``[y0:y1, x0:x1]``.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return y0, y1, x0, x1


def paste_box(
    images: Tensor, permutation: Tensor, box: tuple[int, int, int, int]
) -> tuple[Tensor, float]:
    """Pastes ``box`` of image ``permutation[i]`` into image i.

    Args:
        images: ``[B, C, H, W]``.
        permutation: ``[B]``, the partner of each image.
        box: ``(y0, y1, x0, x1)`` from ``cut_box``.

    Returns:
        The mixed images (a new tensor) and the weight of each image's own label,
        ``1 - box area / (H * W)``: the share of its pixels that remain (the reference
        recomputes ``lam`` this way after clipping, so the label weights match the pixels).
    """
    y0, y1, x0, x1 = box
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[permutation, :, y0:y1, x0:x1]
    h, w = images.shape[-2:]
    return mixed, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def cutmix(images: Tensor, beta: float) -> tuple[Tensor, Tensor, float]:
    """Samples ``lam ~ Beta(beta, beta)``, a partner permutation and a box centre (uniform
    over the pixels) from the global RNG, as the reference's ``cutmix()``.

    Returns:
        ``(mixed images [B, C, H, W], permutation [B], weight of the own label)``.
    """
    b, _, h, w = images.shape
    concentration = torch.tensor(float(beta))
    lam = float(torch.distributions.Beta(concentration, concentration).sample())
    permutation = torch.randperm(b).to(images.device)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    mixed, weight = paste_box(images, permutation, cut_box(h, w, lam, cy, cx))
    return mixed, permutation, weight


class CutMix(WSOLMethod):
    """CutMix: with probability ``prob`` a batch is mixed (``cutmix``) and the loss is
    ``w * CE(logits, y) + (1 - w) * CE(logits, y[permutation])``, ``w`` the own label's
    pixel share; otherwise plain training.

    Args:
        beta: Beta distribution parameter of the mixing ratio (reference default 1.0:
            uniform); 0 disables mixing.
        prob: probability of mixing a batch (reference default 1.0).
    """

    name = "cutmix"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, beta: float = 1.0, prob: float = 1.0
    ) -> None:
        super().__init__(net, backbone, num_classes)
        if beta < 0 or not 0.0 <= prob <= 1.0:
            raise ValueError("beta must be >= 0 and prob in [0, 1]")
        self.beta, self.prob = float(beta), float(prob)

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        # The reference's test: cutmix_prob > U(0, 1) and beta > 0.
        if not (self.beta > 0 and self.prob > float(torch.rand(()))):
            return super().training_loss(net, images, labels, criterion)
        mixed, permutation, weight = cutmix(images, self.beta)
        logits, feats = net.forward_with_features(mixed)
        loss = weight * criterion(logits, labels) + (1.0 - weight) * criterion(
            logits, labels[permutation]
        )
        return loss, logits, feats

    def extra_repr(self) -> str:
        return f"beta={self.beta}, prob={self.prob}"

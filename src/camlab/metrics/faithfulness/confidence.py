"""Average Drop % and % Increase in Confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018).

The class score on ``image * map`` against the score on ``image``. Average Drop divides the
drop by the original score, as the paper and torchcam's ``ClassificationMetric`` do;
pytorch-grad-cam's ``DropInConfidence`` returns the unnormalised ``max(0, score - masked
score)`` per image (``confidence_scores`` gives both). Maps are multiplied into the images, so
they should lie in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from camlab.metrics.faithfulness.scores import _as_maps, _base_scores, check_score, class_scores


def confidence_scores(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: Tensor,
    score: str = "softmax",
    batch_size: int = 64,
    logits: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Scores on the images and on the images multiplied by their maps (Grad-CAM++'s test).

    ``max(0, base - masked)`` is pytorch-grad-cam's ``DropInConfidence``, ``masked > base``
    its ``IncreaseInConfidence``; Average Drop divides the drop by ``base``.

    Args:
        model: classifier.
        images: ``[N, C, H, W]``.
        saliency: ``[N, H, W]`` maps in [0, 1] at the images' resolution.
        targets: ``[N]`` class of each map.
        score: ``softmax`` or ``logit``.
        batch_size: most images per forward pass.
        logits: the model's ``[N, K]`` outputs on ``images`` if already computed (saves a pass).

    Returns:
        ``(base, masked)``, float32 ``[N]`` each.
    """
    maps = _as_maps(saliency, images)
    base = _base_scores(model, images, targets, score, batch_size, logits)
    masked = class_scores(model, images * maps[:, None], targets, score, batch_size)
    return base, masked


class AverageDropIncrease(Metric):
    """Average Drop % and % Increase in Confidence (Grad-CAM++), averaged over images.

    For each image, ``Y`` = score of the target class, ``O`` = the same score on
    ``image * map``: drop ``max(0, Y - O) / Y`` (the ``1e-7`` guard of torchcam), increase
    ``O > Y``. ``compute()`` returns percent: ``average_drop`` (lower is better) and
    ``increase_in_confidence`` (higher is better).

    Args:
        score: ``softmax`` or ``logit``.
        batch_size: most images per forward pass.
    """

    full_state_update = False

    def __init__(self, score: str = "softmax", batch_size: int = 64, **kwargs) -> None:
        super().__init__(**kwargs)
        check_score(score)
        self.score, self.batch_size = score, batch_size
        for name in ("drop", "increase", "total"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        saliency: Tensor,
        targets: Tensor,
        logits: Tensor | None = None,
    ) -> None:
        """Scores ``model`` on ``images`` ``[N, C, H, W]`` and ``images * saliency``.

        Args:
            model: classifier.
            images: ``[N, C, H, W]``.
            saliency: ``[N, H, W]`` in [0, 1].
            targets: ``[N]`` classes.
            logits: ``[N, K]`` outputs on ``images`` if already computed.
        """
        base, masked = confidence_scores(
            model, images, saliency, targets, self.score, self.batch_size, logits
        )
        drop = (base - masked).clamp_min(0) / (base + 1e-7)
        self.drop += drop.double().sum().to(self.drop.device)
        self.increase += (masked > base).double().sum().to(self.drop.device)
        self.total += len(base)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.clamp_min(1)
        return {
            "average_drop": 100 * self.drop / total,
            "increase_in_confidence": 100 * self.increase / total,
        }

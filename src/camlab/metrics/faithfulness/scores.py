"""Class scores shared by the faithfulness metrics.

Scores are the softmax probability of the target class (``score="softmax"``, the peers' usual
``ClassifierOutputSoftmaxTarget`` / ``logits_fn``) or its raw logit (``score="logit"``). Models
are run in eval mode under ``torch.no_grad`` (their train/eval mode is restored), in chunks of
at most ``batch_size`` images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camlab.evalmode import eval_mode

SCORES = ("softmax", "logit")
BASELINES = ("zeros", "blur")
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def _forward(model: nn.Module, images: Tensor) -> Tensor:
    """``model(images)``, 4-D batches fed channels-last: ~1.25x faster on the CPU (oneDNN)
    and what convolutional nets prefer on GPUs; logits within float32 rounding of NCHW."""
    if images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return model(images)


def check_score(score: str) -> None:
    """Raises ``ValueError`` unless ``score`` is one of ``SCORES``."""
    if score not in SCORES:
        raise ValueError(f"score={score!r}; expected one of {SCORES}")


def select_scores(logits: Tensor, targets: Tensor, score: str = "softmax") -> Tensor:
    """The target class's score of each row.

    Args:
        logits: ``[N, K]`` model outputs.
        targets: ``[N]`` class indices.
        score: ``softmax`` (probability) or ``logit`` (raw output).

    Returns:
        float32 ``[N]``.
    """
    check_score(score)
    logits = logits.float()
    if score == "softmax":
        logits = logits.softmax(dim=1)
    return logits.gather(1, targets.to(logits.device).long().view(-1, 1)).squeeze(1)


def class_scores(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    score: str = "softmax",
    batch_size: int = 64,
) -> Tensor:
    """Target class scores of ``model`` on ``images``, forwarded ``batch_size`` at a time.

    Args:
        model: classifier returning ``[N, K]`` logits.
        images: ``[N, C, H, W]``.
        targets: ``[N]`` class indices (one per image).
        score: ``softmax`` or ``logit``.
        batch_size: most images per forward pass.

    Returns:
        float32 ``[N]`` on the images' device.
    """
    targets = targets.to(images.device)
    out = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            logits = _forward(model, images[start : start + batch_size])
            out.append(select_scores(logits, targets[start : start + batch_size], score))
    return torch.cat(out) if out else images.new_zeros(0, dtype=torch.float32)


def _as_maps(saliency: Tensor, images: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Saliency ``[N, H, W]`` checked against ``images``, on their device, in ``dtype`` (the
    images' by default)."""
    if saliency.ndim != 3 or saliency.shape[0] != images.shape[0]:
        raise ValueError(
            f"saliency must be [N, H, W] with one map per image; got {tuple(saliency.shape)} "
            f"for images {tuple(images.shape)}"
        )
    if saliency.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"saliency maps {tuple(saliency.shape[-2:])} must be at the images' resolution "
            f"{tuple(images.shape[-2:])} (upsample them first, e.g. cams_to_scoremaps)"
        )
    return saliency.detach().to(images.device, dtype or images.dtype)


def _base_scores(model, images, targets, score, batch_size, logits) -> Tensor:
    if logits is not None:
        return select_scores(logits.detach().to(images.device), targets, score)
    return class_scores(model, images, targets, score, batch_size)

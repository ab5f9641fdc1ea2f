"""The pointing game (Zhang et al., ECCV 2016; TorchRay's rule): a hit when the map's maximum
lies within ``tolerance`` pixels of the ground truth (boxes or a mask)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def saliency_peaks(saliency: Tensor) -> Tensor:
    """``(x, y)`` of each map's maximum (the first in raster order on ties), ``[N, 2]``."""
    flat = saliency.flatten(1).argmax(dim=1)
    width = saliency.shape[-1]
    return torch.stack([flat % width, flat // width], dim=1)


def pointing_hits(
    saliency: Tensor,
    boxes: Tensor | Sequence[Tensor] | None = None,
    masks: Tensor | None = None,
    tolerance: int = 15,
) -> tuple[Tensor, Tensor]:
    """Whether each map's maximum is within ``tolerance`` pixels of the ground truth.

    TorchRay's rule: a hit when some ground-truth pixel ``q`` has ``|q - peak|^2 <
    tolerance^2`` (strict; ``tolerance=0`` never hits). Boxes are ``(x0, y0, x1, y1)`` with
    inclusive ends (the closest box pixel is the peak clamped into the box); mask pixels equal
    to 1 are foreground (255 = ignore, as in PxAP).

    Args:
        saliency: ``[N, H, W]``.
        boxes: ``[N, K, 4]`` with rows of -1 as padding, or N tensors ``[K_i, 4]``.
        masks: ``[N, H, W]`` (used when ``boxes`` is None).
        tolerance: pixels.

    Returns:
        ``(hit [N] bool, valid [N] bool)``: ``valid`` is False for images without ground truth.
    """
    peaks = saliency_peaks(saliency)
    device = saliency.device
    r2 = tolerance**2
    if boxes is not None:
        if isinstance(boxes, Tensor):
            box_t = boxes.to(device).long().view(len(saliency), -1, 4)
        else:
            k = max((len(b) for b in boxes), default=0)
            box_t = torch.full((len(saliency), max(k, 1), 4), -1, dtype=torch.long, device=device)
            for i, b in enumerate(boxes):
                box_t[i, : len(b)] = torch.as_tensor(b, device=device).long().view(-1, 4)
        real = box_t[..., 0] >= 0
        px, py = peaks[:, 0:1], peaks[:, 1:2]
        dx = (box_t[..., 0] - px).clamp_min(0) + (px - box_t[..., 2]).clamp_min(0)
        dy = (box_t[..., 1] - py).clamp_min(0) + (py - box_t[..., 3]).clamp_min(0)
        hit = (((dx**2 + dy**2) < r2) & real).any(dim=1)
        return hit, real.any(dim=1)
    if masks is None:
        raise ValueError("pointing_hits needs boxes or masks")
    fg = masks.to(device) == 1
    height, width = fg.shape[-2:]
    span = torch.arange(-tolerance, tolerance + 1, device=device)
    oy, ox = torch.meshgrid(span, span, indexing="ij")
    disk = (oy**2 + ox**2) < r2
    oy, ox = oy[disk], ox[disk]  # offsets within the acceptance disc
    ys = peaks[:, 1:2] + oy
    xs = peaks[:, 0:1] + ox
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    flat = (ys.clamp(0, height - 1) * width + xs.clamp(0, width - 1)).long()
    hit = (fg.flatten(1).gather(1, flat) & inside).any(dim=1)
    return hit, fg.flatten(1).any(dim=1)


class PointingGame(Metric):
    """Pointing game accuracy: share of maps whose maximum hits the object (TorchRay's rule).

    ``compute()`` returns percent: ``pointing_game`` over all scored images and
    ``pointing_game_class_mean``, the mean of the per-class accuracies over the classes that
    occur (TorchRay averages over all ``num_classes``, counting absent ones as 0).

    Args:
        num_classes: number of classes (per-class counts).
        tolerance: acceptance radius in pixels (15 in the original protocol at VOC/COCO size).
    """

    full_state_update = False

    def __init__(self, num_classes: int, tolerance: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.tolerance = num_classes, tolerance
        for name in ("hits", "counts"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.float64), "sum")

    def update(
        self,
        saliency: Tensor,
        targets: Tensor,
        boxes: Tensor | Sequence[Tensor] | None = None,
        masks: Tensor | None = None,
    ) -> None:
        """Scores maps ``[N, H, W]`` of classes ``targets`` ``[N]`` against boxes or masks;
        images without ground truth are skipped."""
        hit, valid = pointing_hits(saliency, boxes, masks, self.tolerance)
        labels = targets.to(self.hits.device).long()
        self.hits.index_add_(0, labels, (hit & valid).double().to(self.hits.device))
        self.counts.index_add_(0, labels, valid.double().to(self.hits.device))

    def compute(self) -> dict[str, Tensor]:
        present = self.counts > 0
        per_class = self.hits[present] / self.counts[present]
        class_mean = per_class.mean() if bool(present.any()) else self.hits.sum() * 0
        return {
            "pointing_game": 100 * self.hits.sum() / self.counts.sum().clamp_min(1),
            "pointing_game_class_mean": 100 * class_mean,
        }

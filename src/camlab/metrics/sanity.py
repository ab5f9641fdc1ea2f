"""The sanity checks' similarity table (Adebayo et al., NeurIPS 2018) as a torchmetrics Metric."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from camlab.metrics.similarity import MEASURES, map_similarities


class SanitySimilarity(Metric):
    """Mean similarity between a method's maps on the trained model and on each of ``rows``
    changed models (randomised layers, permuted labels), over the images seen.

    Sum states, so batches and DDP ranks add up. ``compute()`` returns ``similarity``, float64
    ``[rows, len(MEASURES)]`` means (NaN for a row that saw no image), and ``images``, the
    number of images compared (all ranks).

    Args:
        rows: number of changed models compared.
    """

    full_state_update = False

    def __init__(self, rows: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows = rows
        zeros = torch.zeros(rows, len(MEASURES), dtype=torch.float64)
        self.add_state("total", zeros, dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(rows, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, row: int, original: Tensor, changed: Tensor) -> None:
        """Adds one batch of map pairs to ``row``.

        Args:
            row: which changed model made ``changed``.
            original: ``[N, H, W]`` raw maps of the trained model, at the images' resolution.
            changed: ``[N, H, W]`` the changed model's raw maps of the same images and classes.
        """
        if len(original) == 0:
            return
        sims = map_similarities(original, changed)
        values = torch.stack([sims[m].sum() for m in MEASURES]).to(self.total.device)
        self.total[row] += values
        self.count[row] += len(original)

    def compute(self) -> dict[str, Tensor]:
        return {"similarity": self.total / self.count[:, None], "images": self.count.max()}

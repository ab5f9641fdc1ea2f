"""All the faithfulness metrics together, as one module."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchmetrics import Metric

from camlab.metrics.faithfulness.confidence import AverageDropIncrease
from camlab.metrics.faithfulness.deletion import DeletionInsertion
from camlab.metrics.faithfulness.pointing import PointingGame
from camlab.metrics.faithfulness.road import ROAD
from camlab.metrics.faithfulness.scores import ROAD_PERCENTILES, _as_maps


class FaithfulnessMetrics(nn.Module):
    """Average Drop / Increase, deletion / insertion AUC, ROAD and the pointing game together
    (a module, so Lightning moves and syncs the metrics).

    Args:
        num_classes: classes of the pointing game's per-class accuracy.
        score: ``softmax`` or ``logit``.
        steps: deletion / insertion steps.
        insertion_baseline: ``blur`` (RISE) or ``zeros`` (torchcam).
        road_percentiles: ROAD's percentiles.
        road_noise: ROAD's imputation noise.
        pointing_tolerance: pointing game radius (pixels).
        batch_size: most images per forward pass.
        seed: ROAD noise seed (None: the global generator).
        pointing: whether the pointing game is scored (needs boxes or masks in ``update``);
            decided up front so that every DDP rank computes the same metrics.
    """

    def __init__(
        self,
        num_classes: int,
        score: str = "softmax",
        steps: int = 20,
        insertion_baseline: str = "blur",
        road_percentiles: Sequence[float] = ROAD_PERCENTILES,
        road_noise: float = 0.01,
        pointing_tolerance: int = 15,
        batch_size: int = 64,
        seed: int | None = None,
        pointing: bool = True,
    ) -> None:
        super().__init__()
        self.confidence = AverageDropIncrease(score, batch_size)
        self.deletion = DeletionInsertion(
            steps, score, "zeros", insertion_baseline, batch_size=batch_size
        )
        self.road = ROAD(road_percentiles, score, road_noise, batch_size, seed)
        self.pointing = PointingGame(num_classes, pointing_tolerance) if pointing else None

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        saliency: Tensor,
        targets: Tensor,
        logits: Tensor | None = None,
        boxes: Tensor | Sequence[Tensor] | None = None,
        masks: Tensor | None = None,
    ) -> None:
        """All four on one batch; the pointing game only with boxes or masks."""
        if self.pointing is not None and boxes is None and masks is None:
            raise ValueError("the pointing game needs boxes or masks (or pointing=False)")
        saliency = _as_maps(saliency, images)
        targets = targets.to(images.device)
        self.confidence.update(model, images, saliency, targets, logits)
        self.deletion.update(model, images, saliency, targets, logits)
        self.road.update(model, images, saliency, targets, logits)
        if self.pointing is not None:
            self.pointing.update(saliency, targets, boxes, masks)

    def compute(self) -> dict[str, float | list[float]]:
        """Flat numbers (curves as lists); every rank must call it (states are all-reduced)."""
        out: dict[str, float | list[float]] = {}
        for metric in self._metrics():
            for name, value in metric.compute().items():
                out[name] = value.tolist() if value.ndim else float(value)
        return out

    def _metrics(self) -> list[Metric]:
        metrics: list[Metric] = [self.confidence, self.deletion, self.road]
        return metrics + ([self.pointing] if self.pointing is not None else [])

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()

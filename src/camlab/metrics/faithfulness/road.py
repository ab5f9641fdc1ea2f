"""ROAD: RemOve And Debias (Rong et al., ICML 2022).

As pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage`` /
``ROADCombined``: pixels above (MoRF) or below (LeRF) a percentile of the map are replaced by
the noisy linear imputation (``camlab.metrics.faithfulness.imputation``), and the score change
is averaged over the percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from camlab.metrics.faithfulness.imputation import noisy_linear_impute
from camlab.metrics.faithfulness.scores import (
    ROAD_PERCENTILES,
    _as_maps,
    _base_scores,
    check_score,
    class_scores,
)


def _numpy_percentile(sorted_values: Tensor, percentile: float) -> Tensor:
    """``np.percentile(values, percentile)`` of each row, bit for bit (linear method).

    NumPy 2 computes the index in float64, then interpolates in the values' dtype
    (``a + (b - a) * g``, or ``b - (b - a) * (1 - g)`` when ``g >= 0.5``): the same float32
    operations here, so ``value < threshold`` selects exactly the peer's pixels.

    Args:
        sorted_values: ``[N, M]`` ascending.
        percentile: in [0, 100].

    Returns:
        ``[N]``.
    """
    m = sorted_values.shape[1]
    index = (m - 1) * (percentile / 100)
    lower = math.floor(index)
    if index >= m - 1:
        return sorted_values[:, m - 1]
    gamma = index - lower
    a, b = sorted_values[:, lower], sorted_values[:, lower + 1]
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def road_keep_masks(saliency: Tensor, percentiles: Sequence[float], order: str) -> Tensor:
    """Pixels ROAD keeps at each percentile (pytorch-grad-cam's ``RemoveMostRelevantFirst``).

    MoRF keeps ``map < percentile_p(map)`` (removes the top ``100 - p`` %); LeRF keeps
    ``1 - map < percentile_p(1 - map)`` (removes the bottom ``100 - p`` %).

    Args:
        saliency: ``[N, H, W]`` float32.
        percentiles: the p values.
        order: ``morf`` or ``lerf``.

    Returns:
        bool ``[P, N, H, W]``.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order={order!r}; expected morf or lerf")
    values = saliency if order == "morf" else 1 - saliency
    flat = values.flatten(1)
    ordered = flat.sort(dim=1).values
    masks = [flat < _numpy_percentile(ordered, p)[:, None] for p in percentiles]
    return torch.stack(masks).view(len(percentiles), *saliency.shape)


_CPU_SOLVE_BYTES = 10 << 20


def road_scores(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: Tensor,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    score: str = "softmax",
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    logits: Tensor | None = None,
    tol: float = 1e-7,
) -> tuple[Tensor, Tensor, Tensor]:
    """Target scores after ROAD's MoRF and LeRF imputation at each percentile.

    Args:
        model: classifier.
        images: ``[N, C, H, W]``.
        saliency: ``[N, H, W]`` at the images' resolution.
        targets: ``[N]`` classes.
        percentiles: ROAD's percentiles (pytorch-grad-cam's default 10..90).
        score: ``softmax`` or ``logit``.
        noise: imputation noise standard deviation.
        generator: random generator for the noise.
        batch_size: most (image, percentile) pairs per imputation solve and forward pass.
        logits: ``[N, K]`` outputs on ``images`` if already computed.
        tol: CG tolerance of the imputation.

    Returns:
        ``(base [N], morf [P, N], lerf [P, N])`` float32: the score on the image, and after
        removing the most / least relevant pixels (``morf - base`` is the peer's
        ``ROADMostRelevantFirst`` value).
    """
    # float32 as the peer's maps: the percentile thresholds are computed in the maps' dtype
    maps = _as_maps(saliency, images, torch.float32)
    base = _base_scores(model, images, targets, score, batch_size, logits)
    targets = targets.to(images.device)
    n = len(images)
    # (percentile, image) pairs are solved and scored in chunks: on a GPU batch_size of them
    # (one solve of many systems costs the Python of one), on the CPU only as many as keep one
    # float64 vector of the solver within _CPU_SOLVE_BYTES: larger temporaries are mapped and
    # unmapped by the allocator at every operation (72 systems of 224 px, one thread: 9 s in
    # chunks of 8, 34 s in chunks of 64, 25 s of which in page faults)
    chunk = batch_size
    if images.device.type == "cpu":
        chunk = max(1, min(batch_size, _CPU_SOLVE_BYTES // (8 * images[0].numel())))
    out = []
    for order in ("morf", "lerf"):
        keeps = road_keep_masks(maps, percentiles, order).flatten(0, 1)  # [P * N, H, W]
        scores = []
        for start in range(0, len(keeps), chunk):
            job = torch.arange(start, min(start + chunk, len(keeps)), device=images.device)
            image = job % n
            imputed = noisy_linear_impute(images[image], keeps[job], noise, generator, tol)
            scores.append(class_scores(model, imputed, targets[image], score, batch_size))
        out.append(torch.cat(scores).view(len(percentiles), n))
    return base, out[0], out[1]


class ROAD(Metric):
    """ROAD MoRF / LeRF score changes with noisy linear imputation, averaged over images.

    ``compute()`` returns, in score units (probability with ``softmax``): ``road_morf`` and
    ``road_lerf``, the mean over percentiles of (score after imputation - original score)
    (pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``...LeastRelevantFirstAverage``:
    MoRF lower is better, LeRF closer to 0 is better), ``road`` = ``(lerf - morf) / 2``
    (``ROADCombined``, higher is better), and the per-percentile curves ``road_morf_curve`` and
    ``road_lerf_curve`` ``[P]``.

    Args:
        percentiles: ROAD's percentiles.
        score: ``softmax`` or ``logit``.
        noise: imputation noise (ROAD: 0.01).
        batch_size: most images per imputation solve and forward pass.
        seed: seed of the noise generator (per device); None = the global generator.
    """

    full_state_update = False

    def __init__(
        self,
        percentiles: Sequence[float] = ROAD_PERCENTILES,
        score: str = "softmax",
        noise: float = 0.01,
        batch_size: int = 64,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_score(score)
        if not percentiles or any(not 0 <= p <= 100 for p in percentiles):
            raise ValueError(f"percentiles={list(percentiles)}: expected values in [0, 100]")
        self.percentiles = tuple(percentiles)
        self.score, self.noise, self.batch_size, self.seed = score, noise, batch_size, seed
        self._generator: torch.Generator | None = None
        p = len(self.percentiles)
        self.add_state("morf", torch.zeros(p, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("lerf", torch.zeros(p, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _noise_generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        saliency: Tensor,
        targets: Tensor,
        logits: Tensor | None = None,
    ) -> None:
        """Adds the MoRF / LeRF score changes of ``images`` ``[N, C, H, W]``."""
        base, morf, lerf = road_scores(
            model, images, saliency, targets, self.percentiles, self.score, self.noise,
            self._noise_generator(images.device), self.batch_size, logits,
        )  # fmt: skip
        device = self.total.device
        self.morf += (morf - base).double().sum(1).to(device)
        self.lerf += (lerf - base).double().sum(1).to(device)
        self.total += len(images)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.clamp_min(1)
        morf, lerf = self.morf / total, self.lerf / total
        return {
            "road_morf": morf.mean(),
            "road_lerf": lerf.mean(),
            "road": (lerf.mean() - morf.mean()) / 2,
            "road_morf_curve": morf,
            "road_lerf_curve": lerf,
        }

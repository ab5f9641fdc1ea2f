"""Localisation: how much of a saliency map falls on the ground-truth object mask.

Relevance mass / rank accuracy (Arras et al., Information Fusion 2022), top-k intersection
(Theiner et al., 2021), attribution localisation (Kohlbrenner et al., IJCNN 2020) and the ROC
AUC of the map as a pixel classifier of the mask (Fawcett, Pattern Recognition Letters 2006),
each equal to Quantus 0.6.0's per-image score. A map with an empty mask scores NaN, as there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Explain, Spec, quantus_preprocess


def _prepare(maps: Tensor, masks: Tensor | None, normalise: bool, absolute: bool):
    """Quantus's attributions and masks, flattened.

    Returns:
        ``(a [N, H*W], s [N, H*W] bool)``; ``a`` holds the values Quantus holds, in the maps'
        dtype (float32 division done in float64 then rounded equals float32 division, as
        53 >= 2*24 + 2 bits), so ties, which the ranking metrics depend on, are Quantus's too.
    """
    if masks is None:
        raise ValueError("localisation metrics need ground-truth masks")
    dtype = maps.dtype if maps.is_floating_point() else torch.float64
    a = quantus_preprocess(maps, normalise, absolute).to(dtype).flatten(1)
    # Quantus casts ``s_batch`` with ``astype(bool)``: any non-zero pixel is in the mask.
    s = (masks != 0).flatten(1).to(a.device)
    if s.shape != a.shape:
        raise ValueError(f"masks {tuple(masks.shape)} do not match maps {tuple(maps.shape)}")
    return a, s


def _empty_to_nan(scores: Tensor, s: Tensor) -> Tensor:
    """Quantus's NaN for an image whose mask is empty."""
    return scores.masked_fill(s.sum(-1) == 0, float("nan"))


def _descending_order(a: Tensor) -> Tensor:
    """Quantus's ``np.argsort(-a, axis=-1)``, ``[N, D]`` int64 on ``a``'s device.

    Ties make the rank metrics depend on this order, and NumPy 2's default argsort (a SIMD
    quicksort on AVX-512/AVX2 CPUs) is not stable nor any fixed rule a torch sort could follow,
    so the same NumPy call on the same float values is the only way to get Quantus's order.
    """
    order = np.argsort(-a.detach().cpu().numpy(), axis=-1)
    return torch.from_numpy(order).to(a.device)


def relevance_mass_accuracy(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Share of the map's total relevance inside the mask (Quantus ``RelevanceMassAccuracy``).

    Args:
        images: ``[N, C, H, W]`` (unused).
        maps: ``[N, H, W]``.
        masks: ``[N, H, W]`` bool ground truth.
        normalise: Quantus's ``normalise`` (batch-wide ``normalise_by_max``).
        absolute: Quantus's ``abs``.

    Returns:
        ``[N]`` float64; NaN where the mask is empty (and 0/0 where the map sums to zero).
    """
    a, s = _prepare(maps, masks, normalise, absolute)
    a = a.to(torch.float64)
    within = (a * s).sum(-1)
    return _empty_to_nan(within / a.sum(-1), s)


def relevance_rank_accuracy(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Share of the ``K`` highest-ranked pixels that lie in the mask, ``K`` = mask size
    (Quantus ``RelevanceRankAccuracy``).

    Args:
        images: ``[N, C, H, W]`` (unused).
        maps: ``[N, H, W]``.
        masks: ``[N, H, W]`` bool ground truth.
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs``.

    Returns:
        ``[N]`` float64; NaN where the mask is empty.
    """
    a, s = _prepare(maps, masks, normalise, absolute)
    order = _descending_order(a)
    size = s.sum(-1, keepdim=True)
    # Position p of the ranking counts when p < K: ties straddling the K-th pixel are split
    # as NumPy's argsort orders them (see ``_descending_order``).
    top = torch.arange(a.shape[-1], device=a.device) < size
    hits = (s.gather(-1, order) & top).sum(-1)
    return _empty_to_nan(hits.to(torch.float64) / size[:, 0].to(torch.float64), s)


def top_k_intersection(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    k: int = 1000,
    concept_influence: bool = False,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Share of the map's ``k`` highest pixels that lie in the mask (Quantus
    ``TopKIntersection``).

    Args:
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]``.
        masks: ``[N, H, W]`` bool ground truth.
        k: number of top pixels; must be below ``H * W`` (Quantus's default 1000 needs maps
            of more than 1000 pixels, e.g. 32x32).
        concept_influence: scale by ``H*W / mask size`` (Quantus's ``concept_influence``).
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs``.

    Returns:
        ``[N]`` float64; NaN where the mask is empty.

    Raises:
        ValueError: ``k >= H * W`` (Quantus's ``assert_value_smaller_than_input_size``).
    """
    a, s = _prepare(maps, masks, normalise, absolute)
    pixels = int(np.prod(images.shape[2:]))
    if k >= pixels:
        raise ValueError(
            f"top_k_intersection: k={k} must be smaller than the images' {pixels} pixels "
            "(Quantus's default 1000 is for 224-px images); set a smaller k, e.g. "
            "quantus.options={top_k_intersection: {k: 100}} in evaluate.py"
        )
    order = _descending_order(a)[:, :k]
    hits = s.gather(-1, order).sum(-1).to(torch.float64)
    # Tensor / tensor: torch divides by a Python number as times its reciprocal (an ulp off).
    tki = hits / torch.full_like(hits, k)
    if concept_influence:
        # Same operations as Quantus (tki * (n / size)) for the same rounding.
        size = s.sum(-1).to(torch.float64)
        tki = tki * (torch.full_like(size, a.shape[-1]) / size)
    return _empty_to_nan(tki, s)


def attribution_localisation(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    weighted: bool = False,
    max_size: float = 1.0,
    positive_attributions: bool = False,
    normalise: bool = True,
    absolute: bool = True,
    call_batch_size: int = 64,
) -> Tensor:
    """Share of the (positive) relevance inside the mask, optionally weighted by the mask's
    relative size (Quantus ``AttributionLocalisation``).

    Args:
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]``.
        masks: ``[N, H, W]`` bool ground truth.
        weighted: multiply by Quantus's size ratio (see ``call_batch_size``).
        max_size: Quantus only warns when a mask is larger than this share; scores unchanged.
        positive_attributions: clip the preprocessed map at 0 first.
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs`` (default True here).
        call_batch_size: the ``batch_size`` of Quantus's call; it matters only to ``weighted``.

    Returns:
        ``[N]`` float64; NaN where the mask is empty or the ratio exceeds 1.
    """
    a, s = _prepare(maps, masks, normalise, absolute)
    a = a.to(torch.float64)
    if positive_attributions:
        a = a.clamp_min(0)
    inside = (a * s).sum(-1)
    ratio = inside / (a.sum(-1) + 1e-9)
    size = s.sum(-1)
    # Quantus marks empty masks and ratios above 1 (possible with negative relevance) as NaN.
    ratio = ratio.masked_fill((size == 0) | (ratio > 1), float("nan"))
    if weighted:
        # Quantus's "data size" is ``x_batch[2:].size``: the pixels of its batch chunk less two
        # images, not one image's; chunks of <= 2 images give 0 and so inf (or 0 * inf = NaN).
        n = images.shape[0]
        chunk = torch.arange(n, device=a.device) // call_batch_size
        chunk_len = torch.clamp(n - chunk * call_batch_size, max=call_batch_size)
        data = (chunk_len - 2).clamp_min(0) * images[0].numel()
        ratio = ratio * (size.to(torch.float64) / data.to(torch.float64))
    return ratio


def auc(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Area under the ROC curve of the map as a score of mask membership (Quantus ``AUC``).

    Quantus takes sklearn's ``auc(roc_curve(s, a))``, whose tied scores share one threshold
    (a diagonal step); that area is the Mann-Whitney statistic with ties counted one half,
    computed here from mid-ranks: ``(R+ - P(P+1)/2) / (P * Q)``, ``P``/``Q`` pixels in/out.

    Args:
        images: ``[N, C, H, W]`` (unused).
        maps: ``[N, H, W]``.
        masks: ``[N, H, W]`` bool ground truth.
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs``.

    Returns:
        ``[N]`` float64; NaN where the mask is empty or full (sklearn's ROC is undefined).
    """
    a, s = _prepare(maps, masks, normalise, absolute)
    # Any ascending order will do (see below); NumPy's SIMD sort is ~30x torch's on CPU.
    if a.device.type == "cpu":
        index = torch.from_numpy(np.argsort(a.detach().numpy(), axis=-1))
    else:
        index = a.argsort(-1)
    ranked = a.gather(-1, index)
    # 1-based mid-rank of each sorted position: the mean of its tie group's first and last
    # positions, so the order the sort gives tied pixels does not matter.
    d = a.shape[-1]
    position = torch.arange(d, device=a.device).expand_as(index)
    step = ranked[:, 1:] != ranked[:, :-1]
    edge = torch.ones_like(step[:, :1])
    first = torch.where(torch.cat([edge, step], -1), position, 0).cummax(-1).values
    last = torch.where(torch.cat([step, edge], -1), position, d).flip(-1).cummin(-1).values
    mid = (first + last.flip(-1) + 2).to(torch.float64) / 2
    hit = s.gather(-1, index)
    pos = hit.sum(-1).to(torch.float64)
    neg = d - pos
    rank_sum = (mid * hit).sum(-1)
    # Exact in float64 (half-integer sums); 0/0 = NaN for an empty or full mask, as sklearn.
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def _quantus_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """camlab's options as Quantus constructor kwargs (``absolute`` -> ``abs``; the call's
    ``call_batch_size`` is not a constructor option)."""
    kwargs = {k: v for k, v in options.items() if k not in ("absolute", "call_batch_size")}
    return {**kwargs, "abs": options["absolute"]}


SPECS: tuple[Spec, ...] = (
    Spec(
        name="relevance_mass_accuracy",
        fn=relevance_mass_accuracy,
        quantus="RelevanceMassAccuracy",
        quantus_kwargs=_quantus_kwargs,
        needs=("masks",),
    ),
    Spec(
        name="relevance_rank_accuracy",
        fn=relevance_rank_accuracy,
        quantus="RelevanceRankAccuracy",
        quantus_kwargs=_quantus_kwargs,
        needs=("masks",),
    ),
    Spec(
        name="top_k_intersection",
        fn=top_k_intersection,
        quantus="TopKIntersection",
        quantus_kwargs=_quantus_kwargs,
        needs=("masks",),
    ),
    Spec(
        name="attribution_localisation",
        fn=attribution_localisation,
        quantus="AttributionLocalisation",
        quantus_kwargs=_quantus_kwargs,
        needs=("masks",),
    ),
    Spec(
        name="auc",
        fn=auc,
        quantus="AUC",
        quantus_kwargs=_quantus_kwargs,
        needs=("masks",),
    ),
)

"""Complexity: how concentrated a saliency map is, without a model or ground truth.

Sparseness is the Gini index of the map (Chalasani et al., ICML 2020; higher = sparser),
complexity the Shannon entropy of its normalised relevance (Bhatt et al., IJCAI 2020; lower =
simpler); each equal to Quantus 0.6.0's per-image score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Explain, Spec, quantus_preprocess


def _quantus_values(maps: Tensor, normalise: bool, absolute: bool) -> Tensor:
    """``[N, H*W]`` Quantus's preprocessed maps in the maps' own dtype: Quantus keeps float32
    maps in float32 (and float32 division done in float64 then rounded is float32 division)."""
    dtype = maps.dtype if maps.is_floating_point() else torch.float64
    return quantus_preprocess(maps, normalise, absolute).to(dtype).flatten(1)


def sparseness(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    normalise: bool = True,
    absolute: bool = True,
) -> Tensor:
    """Gini index of the map, ``sum_i (2i - D - 1) a_(i) / (D sum a)`` over the ascending
    values ``a_(i)``, ``i = 1..D`` (Quantus ``Sparseness``).

    Args:
        images: ``[N, C, H, W]`` (unused).
        maps: ``[N, H, W]``.
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs`` (default True).

    Returns:
        ``[N]`` float64.
    """
    # Quantus adds 1e-7 in the maps' dtype (float32 rounding included) before sorting.
    a = _quantus_values(maps, normalise, absolute) + 1e-7
    # Sorted values do not depend on how ties are ordered; on CPU NumPy's SIMD sort is ~30x
    # faster than torch's.
    if a.device.type == "cpu":
        a = torch.from_numpy(np.sort(a.detach().numpy(), axis=-1))
    else:
        a = a.sort(-1).values
    a = a.to(torch.float64)
    d = a.shape[-1]
    weights = 2 * torch.arange(1, d + 1, device=a.device, dtype=torch.float64) - d - 1
    return (weights * a).sum(-1) / (d * a.sum(-1))


def complexity(
    model: nn.Module | None,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    normalise: bool = True,
    absolute: bool = True,
) -> Tensor:
    """Entropy ``-sum p log(p + 1e-12)`` of ``p = a / sum |a|`` (Quantus ``Complexity``).

    Args:
        images: ``[N, C, H, W]`` (unused).
        maps: ``[N, H, W]``.
        normalise: Quantus's ``normalise``.
        absolute: Quantus's ``abs`` (default True; without it negative relevance gives
            ``log`` of a negative number, NaN, as in Quantus).

    Returns:
        ``[N]`` float64.
    """
    a = _quantus_values(maps, normalise, absolute).to(torch.float64)
    p = a / a.abs().sum(-1, keepdim=True)
    return -(p * torch.log(p + 1e-12)).sum(-1)


def _quantus_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """camlab's options as Quantus constructor kwargs (``absolute`` -> ``abs``)."""
    return {"normalise": options["normalise"], "abs": options["absolute"]}


SPECS: tuple[Spec, ...] = (
    Spec(
        name="sparseness",
        fn=sparseness,
        quantus="Sparseness",
        quantus_kwargs=_quantus_kwargs,
    ),
    Spec(
        name="complexity",
        fn=complexity,
        quantus="Complexity",
        quantus_kwargs=_quantus_kwargs,
    ),
)

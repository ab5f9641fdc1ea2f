"""Robustness: how much an explanation changes when the input is perturbed slightly.

- Max- / Avg-Sensitivity (Yeh et al., NeurIPS 2019): the largest / mean of
  ``||a(x) - a(x + u)|| / ||a(x)||`` over ``nr_samples`` uniform noises ``u``.
- Local Lipschitz Estimate (Alvarez-Melis & Jaakkola, 2018): the largest
  ``||a(x) - a(x + g)|| / ||x - (x + g)||`` over ``nr_samples`` gaussian noises ``g``.

Quantus 0.6.0 loops over its batches of ``call_batch_size`` images and, within a batch, over
the samples, drawing one noise array per (batch, sample) from NumPy's global generator and
explaining the batch's perturbed copies together; those explanations are normalised over that
one (batch, sample) group. Here the noise comes from the same stream in the same order, and the
perturbed copies of several samples are explained stacked (``batch_size`` images a call).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Explain, Spec, predict, quantus_preprocess

# Quantus's norm functions by name: the flattened difference (or map) -> [rows].
_SENSITIVITY_NORMS = {
    "fro_norm": lambda d: d.norm(dim=-1),
    "l2_norm": lambda d: d.norm(dim=-1),
    "linf_norm": lambda d: d.abs().amax(dim=-1),
}
_DISTANCES = {
    "distance_euclidean": lambda a, b: ((a - b) ** 2).sum(-1).sqrt(),
    "distance_manhattan": lambda a, b: (a - b).abs().sum(-1),
}
_LIPSCHITZ_EPS = 1e-10  # Quantus's lipschitz_constant adds it to the denominator


def _generator(seed: int | None) -> Any:
    """NumPy's legacy stream: seeded, or the global one Quantus draws from."""
    return np.random if seed is None else np.random.RandomState(seed)


def explain_chunks(
    explain: Explain, model: nn.Module, images: Tensor, targets: Tensor, batch_size: int
) -> Tensor:
    """``explain`` over ``images`` in chunks of ``batch_size``: ``[M, H, W]``, detached."""
    chunks = zip(images.split(batch_size), targets.split(batch_size), strict=True)
    return torch.cat([explain(model, x, t).detach() for x, t in chunks])


def _group_preprocess(maps: Tensor, normalise: bool, absolute: bool) -> Tensor:
    """Quantus's ``explain_batch`` postprocessing of each sample's perturbed explanations:
    ``normalise_by_max`` over one group (one Quantus batch at one sample; all-zero groups
    left alone), then ``abs``.

    Args:
        maps: ``[K, B, H, W]``, K groups of B maps.

    Returns:
        ``[K, B, H, W]`` float64.
    """
    maps = maps.to(torch.float64)
    if normalise:
        peak = maps.abs().amax(dim=(1, 2, 3), keepdim=True)
        maps = torch.where(peak > 0, maps / torch.where(peak > 0, peak, 1.0), maps)
    return maps.abs() if absolute else maps


def _perturbed_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    explain: Explain | None,
    seed: int | None,
    batch_size: int,
    nr_samples: int,
    draw: Any,
    score: Any,
    normalise: bool,
    absolute: bool,
    return_nan_when_prediction_changes: bool,
    call_batch_size: int,
) -> Tensor:
    """Per-image, per-sample scores of one robustness metric, ``[N, nr_samples]`` float64.

    Args:
        draw: ``(rng, shape) -> noise`` float64 NumPy array, one Quantus perturb call's draw.
        score: ``(a [B, D], a_perturbed [K, B, D], x [B, D], x_perturbed [K, B, D]) -> [K, B]``,
            all float64.
    """
    if explain is None:
        raise ValueError("robustness metrics need the explanation method (explain)")
    rng = _generator(seed)
    n = len(images)
    a_all = quantus_preprocess(maps, normalise, absolute).flatten(1)  # over the whole call
    x_all = images.to(torch.float32)
    out = torch.full((n, nr_samples), float("nan"), dtype=torch.float64, device=images.device)
    for start in range(0, n, call_batch_size):
        rows = slice(start, min(start + call_batch_size, n))
        x, y, a = x_all[rows], labels[rows], a_all[rows]
        b = len(x)
        x_flat = x.flatten(1)
        before = predict(model, x, False).argmax(-1) if return_nan_when_prediction_changes else None
        # Whole (batch, sample) groups per explain call, so each group normalises at once.
        per_call = max(1, batch_size // b)
        for step in range(0, nr_samples, per_call):
            k = min(per_call, nr_samples - step)
            # Quantus adds float64 noise to the float32 input and stores it back as float32.
            noise = torch.from_numpy(draw(rng, (k, b, x_flat.shape[1]))).to(x.device)
            x_pert = (x_flat.to(torch.float64) + noise).to(torch.float32)
            x_pert = x_pert.reshape(k * b, *x.shape[1:])
            a_pert = explain_chunks(explain, model, x_pert, y.repeat(k), batch_size)
            a_pert = _group_preprocess(a_pert.reshape(k, b, *a_pert.shape[1:]), normalise, absolute)
            s = score(
                a.to(torch.float64),
                a_pert.flatten(2),
                x_flat.to(torch.float64),
                x_pert.reshape(k, b, -1).to(torch.float64),
            )
            if before is not None:
                after = predict(model, x_pert, False).argmax(-1).reshape(k, b)
                s = torch.where(after != before, float("nan"), s)
            out[rows, step : step + k] = s.T.to(out)
    return out


def _uniform(lower_bound: float, upper_bound: float | None) -> Any:
    # Quantus's batch_uniform_noise: symmetric [-lb, lb) without an upper bound, else [lb, ub).
    if upper_bound is not None and upper_bound <= lower_bound:
        raise ValueError(f"upper_bound {upper_bound} must exceed lower_bound {lower_bound}")
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    return lambda rng, shape: rng.uniform(low=low, high=high, size=shape)


def _sensitivity_score(norm_numerator: str, norm_denominator: str) -> Any:
    numerator = _SENSITIVITY_NORMS[norm_numerator]
    denominator = _SENSITIVITY_NORMS[norm_denominator]
    return lambda a, a_pert, x, x_pert: numerator(a - a_pert) / denominator(a)


def _sensitivity(
    reduce: str,
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    explain: Explain | None,
    seed: int | None,
    batch_size: int,
    nr_samples: int,
    lower_bound: float,
    upper_bound: float | None,
    norm_numerator: str,
    norm_denominator: str,
    normalise: bool,
    absolute: bool,
    return_nan_when_prediction_changes: bool,
    call_batch_size: int,
) -> Tensor:
    scores = _perturbed_scores(
        model, images, maps, labels, explain, seed, batch_size, nr_samples,
        _uniform(lower_bound, upper_bound), _sensitivity_score(norm_numerator, norm_denominator),
        normalise, absolute, return_nan_when_prediction_changes, call_batch_size,
    )  # fmt: skip
    return _reduce(scores, reduce, return_nan_when_prediction_changes)


def _reduce(scores: Tensor, reduce: str, strict: bool) -> Tensor:
    # Quantus: np.max / np.mean when a changed prediction should give NaN, else nanmax / nanmean.
    if strict:
        return scores.amax(1) if reduce == "max" else scores.mean(1)
    if reduce == "mean":
        return scores.nanmean(1)
    finite = ~scores.isnan()
    best = torch.where(finite, scores, -float("inf")).amax(1)
    return torch.where(finite.any(1), best, float("nan"))


def max_sensitivity(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    norm_numerator: str = "fro_norm",
    norm_denominator: str = "fro_norm",
    normalise: bool = False,
    absolute: bool = False,
    return_nan_when_prediction_changes: bool = False,
    call_batch_size: int = 64,
) -> Tensor:
    """Max-Sensitivity (Quantus ``MaxSensitivity``): the largest relative change of the map
    over ``nr_samples`` uniformly perturbed inputs.

    Args:
        model: the classifier (eval mode).
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` explanations of ``labels`` for ``images``.
        labels: ``[N]`` the explained classes.
        masks: unused.
        explain: ``(model, images [M, C, H, W], targets [M]) -> [M, H, W]``, the method.
        seed: seeds NumPy's legacy generator (None: the global one, as Quantus draws).
        batch_size: images per ``explain`` call.
        nr_samples: perturbations per image.
        lower_bound, upper_bound: noise in [-lower, lower), or [lower, upper) when upper is set.
        norm_numerator, norm_denominator: ``"fro_norm"``, ``"l2_norm"`` or ``"linf_norm"``.
        normalise, absolute: Quantus's ``normalise`` / ``abs`` of every map.
        return_nan_when_prediction_changes: NaN samples whose predicted class changed, and
            NaN images with any (else such samples are left out).
        call_batch_size: Quantus's call ``batch_size``; it fixes the draw order and the
            groups the perturbed maps are normalised over.

    Returns:
        ``[N]`` float64.
    """
    return _sensitivity(
        "max", model, images, maps, labels, explain, seed, batch_size, nr_samples, lower_bound,
        upper_bound, norm_numerator, norm_denominator, normalise, absolute,
        return_nan_when_prediction_changes, call_batch_size,
    )  # fmt: skip


def avg_sensitivity(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    norm_numerator: str = "fro_norm",
    norm_denominator: str = "fro_norm",
    normalise: bool = False,
    absolute: bool = False,
    return_nan_when_prediction_changes: bool = False,
    call_batch_size: int = 64,
) -> Tensor:
    """Avg-Sensitivity (Quantus ``AvgSensitivity``): the mean relative change of the map over
    ``nr_samples`` uniformly perturbed inputs. Arguments as ``max_sensitivity``.

    Returns:
        ``[N]`` float64.
    """
    return _sensitivity(
        "mean", model, images, maps, labels, explain, seed, batch_size, nr_samples, lower_bound,
        upper_bound, norm_numerator, norm_denominator, normalise, absolute,
        return_nan_when_prediction_changes, call_batch_size,
    )  # fmt: skip


def local_lipschitz_estimate(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    nr_samples: int = 200,
    perturb_mean: float = 0.0,
    perturb_std: float = 0.1,
    norm_numerator: str = "distance_euclidean",
    norm_denominator: str = "distance_euclidean",
    normalise: bool = True,
    absolute: bool = False,
    return_nan_when_prediction_changes: bool = False,
    call_batch_size: int = 64,
) -> Tensor:
    """Local Lipschitz Estimate (Quantus ``LocalLipschitzEstimate``): the largest
    ``d(a, a') / (d(x, x') + 1e-10)`` over ``nr_samples`` gaussian perturbations ``x'``.

    Args:
        perturb_mean, perturb_std: the gaussian noise.
        norm_numerator, norm_denominator: ``"distance_euclidean"`` or ``"distance_manhattan"``.
        others: as ``max_sensitivity``.

    Returns:
        ``[N]`` float64.
    """
    numerator, denominator = _DISTANCES[norm_numerator], _DISTANCES[norm_denominator]

    def score(a: Tensor, a_pert: Tensor, x: Tensor, x_pert: Tensor) -> Tensor:
        return numerator(a, a_pert) / (denominator(x, x_pert) + _LIPSCHITZ_EPS)

    def draw(rng: Any, shape: tuple[int, ...]) -> np.ndarray:
        return rng.normal(loc=perturb_mean, scale=perturb_std, size=shape)

    scores = _perturbed_scores(
        model, images, maps, labels, explain, seed, batch_size, nr_samples, draw, score,
        normalise, absolute, return_nan_when_prediction_changes, call_batch_size,
    )  # fmt: skip
    return _reduce(scores, "max", return_nan_when_prediction_changes)


def _quantus_common(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "nr_samples": options["nr_samples"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
        "return_nan_when_prediction_changes": options["return_nan_when_prediction_changes"],
    }


def _sensitivity_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from quantus.functions import norm_func  # only to build the reference call

    return {
        **_quantus_common(options),
        "lower_bound": options["lower_bound"],
        "upper_bound": options["upper_bound"],
        "norm_numerator": getattr(norm_func, options["norm_numerator"]),
        "norm_denominator": getattr(norm_func, options["norm_denominator"]),
    }


def _lipschitz_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from quantus.functions import similarity_func  # only to build the reference call

    return {
        **_quantus_common(options),
        "perturb_mean": options["perturb_mean"],
        "perturb_std": options["perturb_std"],
        "norm_numerator": getattr(similarity_func, options["norm_numerator"]),
        "norm_denominator": getattr(similarity_func, options["norm_denominator"]),
    }


SPECS: tuple[Spec, ...] = (
    Spec(
        "max_sensitivity", max_sensitivity, "MaxSensitivity", _sensitivity_kwargs,
        needs=("explain",), random=True,
    ),
    Spec(
        "avg_sensitivity", avg_sensitivity, "AvgSensitivity", _sensitivity_kwargs,
        needs=("explain",), random=True,
    ),
    Spec(
        "local_lipschitz_estimate", local_lipschitz_estimate, "LocalLipschitzEstimate",
        _lipschitz_kwargs, needs=("explain",), random=True,
    ),
)  # fmt: skip

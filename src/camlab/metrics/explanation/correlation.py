"""Faithfulness as a correlation between attributions and the model's response to perturbations.

* Faithfulness correlation (Bhatt et al., IJCAI 2020): over random pixel subsets, the Pearson
  correlation of the subset's attribution sum with the drop in the target score when the subset
  is replaced by a baseline.
* Monotonicity correlation (Nguyen & Martínez, arXiv:2007.07584): for groups of pixels in
  ascending attribution order, the Spearman correlation of the group's attribution sum with the
  (relative) variance of the target score when only that group is replaced by a baseline.

Both reproduce Quantus 0.6.0's ``FaithfulnessCorrelation`` and ``MonotonicityCorrelation``
per image, random draws included; the perturbed forwards run stacked in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Spec, predict, quantus_preprocess
from camlab.metrics.similarity import average_ranks

# Quantus's string baselines for ``batch_baseline_replacement_by_indices`` (one value per image).
BASELINES = ("black", "white", "mean", "uniform")


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation as ``scipy.stats.pearsonr(a, b, axis=1)``, in float64.

    A constant row (in ``a`` or ``b``) gives NaN, as SciPy does.

    Args:
        a: ``[B, n]``.
        b: ``[B, n]``.

    Returns:
        ``[B]`` float64 in [-1, 1] or NaN.
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    constant = (a == a[:, :1]).all(-1) | (b == b[:, :1]).all(-1)
    am = a - a.mean(-1, keepdim=True)
    bm = b - b.mean(-1, keepdim=True)
    r = (am * bm).sum(-1) / (am.norm(dim=-1) * bm.norm(dim=-1))
    return r.clamp(-1.0, 1.0).masked_fill(constant, float("nan"))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman correlation: Pearson of average ranks (``scipy.stats.spearmanr``).

    Quantus's batched ``correlation_spearman`` takes the diagonal of SciPy's ``[2B, 2B]``
    matrix, which is this per row. (When row 0 or 1 of ``a`` is constant SciPy returns a single
    NaN for the whole batch; here only the constant rows are NaN.)

    Args:
        a: ``[B, n]``.
        b: ``[B, n]``.

    Returns:
        ``[B]`` float64.
    """
    return pearson(average_ranks(a.to(torch.float64)), average_ranks(b.to(torch.float64)))


SIMILARITY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "correlation_pearson": pearson,
    "correlation_spearman": spearman,
}


@torch.no_grad()
def target_scores(
    model: nn.Module,
    pieces: Iterable[tuple[Tensor, Tensor]],
    softmax: bool,
    batch_size: int,
) -> Tensor:
    """Scores of the given classes for a stream of image pieces, forwarded in full chunks.

    Quantus forwards one batch per perturbation step; stacking the steps' images and running
    ``batch_size`` at a time is where the speed comes from. Pieces are regrouped so that every
    forward but the last is full, and are consumed lazily so that only one chunk of perturbed
    images is alive at a time.

    Args:
        pieces: ``(images [k, C, H, W], classes [k])`` in order.

    Returns:
        ``[sum k]`` float32, in the pieces' order.
    """
    out: list[Tensor] = []
    held: list[tuple[Tensor, Tensor]] = []
    count = 0

    def flush() -> None:
        images = torch.cat([p[0] for p in held]).to(torch.float32)
        classes = torch.cat([p[1] for p in held])
        for chunk, cls in zip(images.split(batch_size), classes.split(batch_size), strict=True):
            scores = predict(model, chunk, softmax, batch_size)
            out.append(scores.gather(1, cls[:, None].to(scores.device))[:, 0].float())
        held.clear()

    for images, classes in pieces:
        held.append((images, classes))
        count += len(images)
        if count >= batch_size:
            flush()
            count = 0
    if held:
        flush()
    if not out:
        return torch.empty(0, dtype=torch.float32)
    return torch.cat(out)


def _flat(images: Tensor, maps: Tensor, normalise: bool, absolute: bool) -> tuple[Tensor, Tensor]:
    """Images and Quantus's preprocessed maps, broadcast over channels and flattened.

    Returns:
        ``(x [N, C*H*W] float32, a [N, C*H*W] float64)``.
    """
    n, c = images.shape[:2]
    a = quantus_preprocess(maps, normalise, absolute)
    a = a[:, None].expand(n, c, *a.shape[-2:]).reshape(n, -1)
    return images.reshape(n, -1).to(torch.float32), a


def _image_baselines(x: Tensor, kind: str | float) -> Tensor:
    """Quantus's per-image baseline value for ``batch_baseline_replacement_by_indices``.

    ``black`` / ``white`` / ``mean`` are the min / max / mean over all features (channels
    included) of each image; a number is used as is. ``uniform`` is drawn elsewhere.

    Args:
        x: ``[N, F]`` float32.

    Returns:
        ``[N]`` float32.
    """
    if isinstance(kind, (int, float)):
        return torch.full((len(x),), float(kind), dtype=torch.float32, device=x.device)
    kind = kind.lower()
    if kind == "black":
        return x.amin(-1)
    if kind == "white":
        return x.amax(-1)
    if kind == "mean":
        # NumPy averages float32 in float32; the float64 mean rounded is that up to an ulp.
        return x.to(torch.float64).mean(-1).to(torch.float32)
    raise ValueError(f"perturb_baseline={kind!r}; expected a number or one of {BASELINES}")


def _quantus_batches(n: int, call_batch_size: int) -> Iterator[range]:
    """The image ranges of Quantus's ``__call__`` batches: draws follow them, batch by batch."""
    for start in range(0, n, call_batch_size):
        yield range(start, min(start + call_batch_size, n))


def _is_uniform(kind: str | float) -> bool:
    return isinstance(kind, str) and kind.lower() == "uniform"


def faithfulness_correlation(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    nr_runs: int = 100,
    subset_size: int = 224,
    perturb_baseline: str | float = "black",
    similarity_func: str = "correlation_pearson",
    normalise: bool = True,
    absolute: bool = False,
    softmax: bool = False,
    uniform_low: float = 0.0,
    uniform_high: float = 1.0,
    call_batch_size: int = 64,
) -> Tensor:
    """Quantus's ``FaithfulnessCorrelation`` per image.

    For each of ``nr_runs`` runs, ``subset_size`` features (over ``C*H*W``, channels apart) are
    drawn without replacement per image and replaced by the baseline; the score is the
    similarity (Pearson by default) between the subsets' attribution sums and the target score
    drops ``f(x) - f(x_perturbed)``.

    Draws, in Quantus's order: for each Quantus call batch of ``call_batch_size`` images
    (Quantus's ``__call__`` default 64), for each run, ``np.random.choice(F, subset_size,
    replace=False)`` per image, then ``np.random.uniform(low, high, B)``: one value per image
    and run, drawn for any named baseline (Quantus builds all of them on each call), not for a
    number.

    Args:
        model: eval-mode classifier on ``[N, C, H, W]`` float32.
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` attributions.
        labels: ``[N]`` target classes.
        masks: unused.
        explain: unused.
        seed: seeds ``np.random.RandomState`` (``np.random.seed(seed)`` before Quantus).
        batch_size: images per forward.
        nr_runs: random subsets per image.
        subset_size: features per subset.
        perturb_baseline: ``black``, ``white``, ``mean``, ``uniform`` or a number.
        similarity_func: ``correlation_pearson`` or ``correlation_spearman``.
        normalise: Quantus's ``normalise`` (batch-wide division by the max).
        absolute: Quantus's ``abs``.
        softmax: score softmax probabilities instead of logits.
        uniform_low: lower bound of the ``uniform`` baseline.
        uniform_high: upper bound of the ``uniform`` baseline.
        call_batch_size: Quantus's ``__call__`` ``batch_size`` (sets the draw order).

    Returns:
        ``[N]`` float64.
    """
    del masks, explain
    n = len(images)
    x, a = _flat(images, maps, normalise, absolute)
    features = x.shape[1]
    if subset_size >= features:
        raise ValueError(f"subset_size={subset_size} must be smaller than {features} features")
    uniform = _is_uniform(perturb_baseline)

    # All random numbers first, in NumPy, exactly as Quantus draws them.
    rng = np.random.RandomState(seed)
    subsets = np.empty((n, nr_runs, subset_size), dtype=np.int64)
    draws = np.empty((n, nr_runs), dtype=np.float64)
    for batch in _quantus_batches(n, call_batch_size):
        for run in range(nr_runs):
            for i in batch:
                subsets[i, run] = rng.choice(features, subset_size, replace=False)
            if isinstance(perturb_baseline, str):
                # Quantus's ``get_baseline_dict`` draws them for any named baseline.
                draws[batch.start : batch.stop, run] = rng.uniform(
                    uniform_low, uniform_high, size=len(batch)
                )
    subsets_t = torch.from_numpy(subsets).to(x.device)
    if uniform:
        # Quantus writes the float64 draw into the float32 image: rounded to float32.
        base = torch.from_numpy(draws).to(x.device, torch.float32)
    else:
        base = _image_baselines(x, perturb_baseline)[:, None].expand(n, nr_runs)

    def pieces() -> Iterator[tuple[Tensor, Tensor]]:
        # Rows are (image, run) pairs; build at most ``batch_size`` perturbed images at a time.
        rows = n * nr_runs
        for start in range(0, rows, batch_size):
            row = torch.arange(start, min(start + batch_size, rows), device=x.device)
            i, run = row // nr_runs, row % nr_runs
            idx = subsets_t[i, run]
            perturbed = x[i].scatter(1, idx, base[i, run][:, None].expand_as(idx))
            yield perturbed.view(len(row), *images.shape[1:]), labels.to(x.device)[i]

    y = target_scores(model, [(x.view(images.shape), labels.to(x.device))], softmax, batch_size)
    y_perturbed = target_scores(model, pieces(), softmax, batch_size).view(n, nr_runs)
    # A subset already at the baseline leaves the image unchanged: score it f(x) exactly, as a
    # deterministic forward would, whatever the chunking of the forwards.
    unchanged = (x.gather(1, subsets_t.view(n, -1)).view(n, nr_runs, -1) == base[..., None]).all(-1)
    y_perturbed = torch.where(unchanged, y[:, None], y_perturbed)
    # Quantus subtracts in float32.
    deltas = (y[:, None] - y_perturbed).to(torch.float64)
    att_sums = a.gather(1, subsets_t.view(n, -1)).view(n, nr_runs, subset_size).sum(-1)
    return SIMILARITY[similarity_func](att_sums, deltas)


def monotonicity_correlation(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    nr_samples: int = 100,
    features_in_step: int = 1,
    eps: float = 1e-5,
    perturb_baseline: str | float = "uniform",
    similarity_func: str = "correlation_spearman",
    normalise: bool = True,
    absolute: bool = True,
    softmax: bool = True,
    uniform_low: float = 0.0,
    uniform_high: float = 1.0,
    call_batch_size: int = 64,
) -> Tensor:
    """Quantus's ``MonotonicityCorrelation`` per image.

    Features (``C*H*W``) are sorted by ascending attribution (NumPy's ``argsort``, so ties fall
    as in Quantus) and cut into groups of ``features_in_step``. Each group alone is replaced by
    the baseline ``nr_samples`` times; its "variance" is the mean of ``(f(x') - f(x))**2`` over
    the samples divided by ``f(x)**2`` (when ``|f(x)| >= eps``). The score is the similarity
    (Spearman by default) between the groups' attribution sums and their variances.

    Draws, in Quantus's order: for each Quantus call batch, for each group, for each sample,
    ``np.random.uniform(low, high, B)``: one value per image. Quantus draws them whatever the
    baseline, but only ``uniform`` uses them and nothing else is random, so other baselines
    skip them; their samples are identical, so each group is forwarded once.

    Args:
        model: eval-mode classifier on ``[N, C, H, W]`` float32.
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` attributions.
        labels: ``[N]`` target classes.
        masks: unused.
        explain: unused.
        seed: seeds ``np.random.RandomState`` (``np.random.seed(seed)`` before Quantus).
        batch_size: images per forward.
        nr_samples: perturbations per group.
        features_in_step: features per group; must divide ``H*W``.
        eps: below this ``|f(x)|`` the variance is not divided by ``f(x)**2``.
        perturb_baseline: ``uniform``, ``black``, ``white``, ``mean`` or a number.
        similarity_func: ``correlation_spearman`` or ``correlation_pearson``.
        normalise: Quantus's ``normalise`` (batch-wide division by the max).
        absolute: Quantus's ``abs``.
        softmax: score softmax probabilities (Quantus's ``__call__`` default here) or logits.
        uniform_low: lower bound of the ``uniform`` baseline.
        uniform_high: upper bound of the ``uniform`` baseline.
        call_batch_size: Quantus's ``__call__`` ``batch_size`` (sets the draw order).

    Returns:
        ``[N]`` float64.
    """
    del masks, explain
    n = len(images)
    if math.prod(images.shape[2:]) % features_in_step:
        raise ValueError(f"features_in_step={features_in_step} must divide H*W")
    x, a = _flat(images, maps, normalise, absolute)
    features = x.shape[1]
    steps = math.ceil(features / features_in_step)
    uniform = _is_uniform(perturb_baseline)
    samples = nr_samples if uniform else 1

    # Quantus sorts its float32 maps with NumPy's default argsort; sorting the same values with
    # the same routine puts tied attributions (Grad-CAM's zeros) in the same groups.
    a_quantus = a.to(maps.dtype).cpu().numpy()
    order = torch.from_numpy(np.argsort(a_quantus, axis=1)).to(x.device)
    groups = order.view(n, steps, features_in_step)  # [N, steps, k]

    rng = np.random.RandomState(seed)
    if uniform:
        draws = np.empty((n, steps, nr_samples), dtype=np.float64)
        for batch in _quantus_batches(n, call_batch_size):
            values = rng.uniform(uniform_low, uniform_high, size=(steps, nr_samples, len(batch)))
            draws[batch.start : batch.stop] = values.transpose(2, 0, 1)
        base = torch.from_numpy(draws).to(x.device, torch.float32)
    else:
        base = _image_baselines(x, perturb_baseline)[:, None, None].expand(n, steps, 1)

    rows = n * steps * samples

    def pieces() -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, rows, batch_size):
            row = torch.arange(start, min(start + batch_size, rows), device=x.device)
            i, step, sample = row // (steps * samples), (row // samples) % steps, row % samples
            idx = groups[i, step]
            perturbed = x[i].scatter(1, idx, base[i, step, sample][:, None].expand_as(idx))
            yield perturbed.view(len(row), *images.shape[1:]), labels.to(x.device)[i]

    y = target_scores(model, [(x.view(images.shape), labels.to(x.device))], softmax, batch_size)
    y_perturbed = target_scores(model, pieces(), softmax, batch_size).view(n, steps, samples)
    # A group already at the baseline leaves the image unchanged: score it f(x) exactly, as a
    # deterministic forward would, so the exact ties (zero variance) Quantus sees survive any
    # chunking of the forwards.
    unchanged = (x.gather(1, groups.view(n, -1)).view(n, steps, 1, -1) == base[..., None]).all(-1)
    y_perturbed = torch.where(unchanged, y[:, None, None], y_perturbed)
    # Quantus subtracts in float32; the mean over identical samples is the value itself.
    diff = (y_perturbed - y[:, None, None]).to(torch.float64)
    variance = (diff**2).mean(-1)
    y_abs = y.abs().to(torch.float64)
    inverse = torch.where(y_abs >= eps, 1.0 / y_abs, torch.ones_like(y_abs)) ** 2
    att_sums = a.gather(1, groups.view(n, -1)).view(n, steps, features_in_step).sum(-1)
    return SIMILARITY[similarity_func](att_sums, variance * inverse[:, None])


def _similarity_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from quantus.functions import similarity_func  # only where Quantus is compared

    return {"similarity_func": getattr(similarity_func, options["similarity_func"])}


def _baseline_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "perturb_baseline": options["perturb_baseline"],
        "perturb_func_kwargs": {
            "uniform_low": options["uniform_low"],
            "uniform_high": options["uniform_high"],
        },
    }


def _faithfulness_correlation_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "nr_runs": options["nr_runs"],
        "subset_size": options["subset_size"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
        "return_aggregate": False,
        **_baseline_kwargs(options),
        **_similarity_kwargs(options),
    }


def _monotonicity_correlation_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "nr_samples": options["nr_samples"],
        "features_in_step": options["features_in_step"],
        "eps": options["eps"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
        "return_aggregate": False,
        **_baseline_kwargs(options),
        **_similarity_kwargs(options),
    }


SPECS: tuple[Spec, ...] = (
    Spec(
        name="faithfulness_correlation",
        fn=faithfulness_correlation,
        quantus="FaithfulnessCorrelation",
        quantus_kwargs=_faithfulness_correlation_kwargs,
        random=True,
    ),
    Spec(
        name="monotonicity_correlation",
        fn=monotonicity_correlation,
        quantus="MonotonicityCorrelation",
        quantus_kwargs=_monotonicity_correlation_kwargs,
        random=True,
    ),
)

"""Perturbation-curve faithfulness: how fast the class score falls as the features an
explanation ranks highest are replaced by a baseline, with Quantus 0.6.0's numbers.

- Pixel-Flipping (Bach et al., PLoS ONE 2015): features flipped ``features_in_step`` at a time,
  most relevant first; the curve is the class score after each step.
- Region Perturbation (Samek et al., IEEE TNNLS 2017; arXiv 2015): ``patch_size`` squares
  perturbed by decreasing (``morf``), increasing (``lerf``) or random attribution sum; the
  curve is the score's drop from the unperturbed one.
- Selectivity (Montavon et al., Digital Signal Processing 2018): every square, most relevant
  first; the curve is the class score.

A per-image score is the trapezoid area under the curve with unit spacing (Quantus's
``calculate_auc``). The ordering, the baselines and the random draws follow Quantus exactly;
the forward passes of every image and step are batched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Spec, predict, quantus_preprocess

# Quantus's ``__call__`` batch size: its random draws (``uniform`` baselines, ``random``
# orders) go batch by batch, so reproducing them needs its batching.
QUANTUS_BATCH = 64
BASELINES = ("black", "white", "mean", "uniform")
ORDERS = ("morf", "lerf", "random")


def _attributions(maps: Tensor, images: Tensor, normalise: bool, absolute: bool) -> np.ndarray:
    """Quantus's preprocessed attributions, broadcast over channels, in its dtype.

    Quantus normalises in the maps' own dtype; ``quantus_preprocess`` does it in float64, and
    rounding that quotient of two float32 numbers to float32 gives the float32 quotient exactly
    (53 >= 2 * 24 + 2 bits), so ties and sums below match Quantus bit for bit.

    Returns:
        ``[N, C, H, W]`` float32 (float64 for float64 maps), C-contiguous.
    """
    dtype = maps.dtype if maps.dtype in (torch.float32, torch.float64) else torch.float32
    a = quantus_preprocess(maps.detach().cpu(), normalise, absolute).to(dtype).numpy()
    n, c, h, w = images.shape
    return np.ascontiguousarray(np.broadcast_to(a[:, None], (n, c, h, w)))


def _draws(
    seed: int | None, n: int, steps: int, permute: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """NumPy's random numbers in Quantus's order: per Quantus batch, one permutation of
    ``permute`` patches per image (``order="random"``), then at every perturbation step one
    ``uniform(0, 1)`` per image, which ``get_baseline_dict`` draws whatever the baseline.

    Returns:
        ``(uniform [n, steps] float64, permutations [n, permute] or None)``.
    """
    rng = np.random.RandomState(seed)
    uniform = np.empty((n, steps))
    perms = None if permute is None else np.empty((n, permute), dtype=np.int64)
    for start in range(0, n, QUANTUS_BATCH):
        stop = min(start + QUANTUS_BATCH, n)
        if perms is not None:
            for i in range(start, stop):
                perms[i] = rng.permutation(permute)
        for k in range(steps):
            uniform[start:stop, k] = rng.uniform(0.0, 1.0, size=stop - start)
    return uniform, perms


def _step_values(
    flat: np.ndarray, groups: np.ndarray, baseline: Any, uniform: np.ndarray | None
) -> np.ndarray:
    """The baseline value Quantus writes at each step, per image.

    Quantus recomputes the baseline from the *current* perturbed array at every step: ``black``
    (``white``) is its minimum (maximum), which the replacement never changes; ``mean`` drifts
    as replaced features take the mean, so it is replayed step by step in float32.

    Args:
        flat: ``[N, F]`` the unperturbed (padded) inputs, flattened as Quantus does.
        groups: ``[T, N, G]`` feature indices replaced at each step.
        baseline: a name of ``BASELINES`` or a number.
        uniform: ``[N, T]`` draws for ``uniform``.

    Returns:
        ``[N, T]`` in ``flat``'s dtype.
    """
    n, steps = flat.shape[0], len(groups)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return np.full((n, steps), baseline, dtype=flat.dtype)
    kind = str(baseline).lower()
    if kind == "black":
        return np.repeat(flat.min(axis=1, keepdims=True), steps, axis=1)
    if kind == "white":
        return np.repeat(flat.max(axis=1, keepdims=True), steps, axis=1)
    if kind == "uniform":
        return uniform.astype(flat.dtype)
    if kind == "mean":
        arr, rows = flat.copy(), np.arange(n)[:, None]
        values = np.empty((n, steps), dtype=flat.dtype)
        for k in range(steps):
            values[:, k] = arr.mean(axis=1)
            arr[rows, groups[k]] = values[:, k, None]
        return values
    raise ValueError(f"perturb_baseline={baseline!r}; expected a number or one of {BASELINES}")


@torch.no_grad()
def _scores_of_steps(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    step: Tensor,
    value: Tensor,
    steps: int,
    softmax: bool,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Class scores of every image after each step, all forwards batched.

    After step ``k`` (0-based) an image shows ``value`` where ``step <= k``, itself elsewhere.
    A step that writes only values already there (``black`` on a black background) leaves the
    image as it was, so its score is the previous image's and it is not run again.

    Args:
        images: ``[N, C, H, W]``.
        labels: ``[N]``.
        step: ``[N, C, H, W]`` int64, the step replacing each feature (``>= steps``: never).
        value: ``[N, C, H, W]``, what it is replaced with.

    Returns:
        ``([N, steps], [N])`` float32: the curves, and the unperturbed images' scores.
    """
    n = images.shape[0]
    device = images.device
    x = images.to(torch.float32)
    step, value = step.to(device), value.to(device=device, dtype=torch.float32)
    labels = labels.to(device)
    # changed[i, k]: step k alters image i; column `steps` collects the never-replaced features
    altered = (value != x).flatten(1)
    keys = torch.arange(n, device=device)[:, None] * (steps + 1) + step.clamp(max=steps).flatten(1)
    changed = torch.zeros(n * (steps + 1), dtype=torch.bool, device=device)
    changed[keys[altered]] = True
    changed = changed.view(n, steps + 1)[:, :steps]
    # each (image, step) shows the image of its last altering step (-1: the unperturbed image)
    ks = torch.arange(steps, device=device).expand(n, steps)
    source = torch.where(changed, ks, -1).cummax(dim=1).values
    image, k = changed.nonzero(as_tuple=True)
    image = torch.cat([torch.arange(n, device=device), image])  # and every unperturbed image
    k = torch.cat([torch.full((n,), -1, device=device), k])
    scores = torch.empty(n, steps + 1, dtype=torch.float32, device=device)  # column 0: k = -1
    for start in range(0, len(image), batch_size):
        i, kk = image[start : start + batch_size], k[start : start + batch_size]
        perturbed = torch.where(step[i] <= kk[:, None, None, None], value[i], x[i])
        out = predict(model, perturbed, softmax, batch_size)
        scores[i, kk + 1] = out.gather(1, labels[i, None]).squeeze(1).to(torch.float32)
    return scores.gather(1, source + 1), scores[:, 0]


def _auc(curves: Tensor) -> Tensor:
    """``np.trapz(curves, dx=1, axis=1)`` in the curves' dtype, as float64. ``[N, T] -> [N]``.

    The trapezoids are exact elementwise operations; their sum goes through NumPy so that it
    takes NumPy's pairwise order (torch's float32 sum differs in the last bits).
    """
    terms = (curves[:, 1:] + curves[:, :-1]) / 2
    total = np.add.reduce(np.ascontiguousarray(terms.detach().cpu().numpy()), axis=1)
    return torch.from_numpy(total.astype(np.float64)).to(curves.device)


def _pixel_flipping_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    seed: int | None,
    batch_size: int,
    features_in_step: int,
    perturb_baseline: Any,
    softmax: bool,
    normalise: bool,
    absolute: bool,
) -> Tensor:
    n, c, h, w = images.shape
    if (h * w) % features_in_step:
        raise ValueError(f"features_in_step={features_in_step} does not divide H * W = {h * w}")
    a = _attributions(maps, images, normalise, absolute).reshape(n, -1)
    # Quantus's np.argsort(-a) (quicksort, not stable): ties fall in NumPy's order, so NumPy
    # sorts here too, on the same dtype and values. Channels are features of their own.
    order = np.argsort(-a, axis=1)
    features = order.shape[1]
    steps = math.ceil(features / features_in_step)
    flat = images.detach().cpu().to(torch.float32).numpy().reshape(n, -1)
    step = np.empty_like(order)
    step[np.arange(n)[:, None], order] = np.arange(features) // features_in_step
    # features_in_step divides H * W, hence C * H * W: every step replaces as many features
    groups = order.reshape(n, steps, features_in_step).transpose(1, 0, 2)
    uniform = _draws(seed, n, steps)[0] if str(perturb_baseline).lower() == "uniform" else None
    values = _step_values(flat, groups, perturb_baseline, uniform)
    value = np.take_along_axis(values, step, axis=1)
    return _scores_of_steps(
        model,
        images,
        labels,
        torch.from_numpy(step).view(n, c, h, w),
        torch.from_numpy(value).view(n, c, h, w),
        steps,
        softmax,
        batch_size,
    )[0]


def pixel_flipping_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    features_in_step: int = 1,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Pixel-Flipping curves: the class score after each of ``HW / features_in_step`` steps.

    Features (pixels of each channel, the map broadcast over channels) are ranked by decreasing
    attribution and replaced ``features_in_step`` at a time; Quantus's ``PixelFlipping``.

    Args:
        model: classifier in eval mode, ``[N, C, H, W] -> [N, K]``.
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` attributions.
        labels: ``[N]`` classes scored.
        masks, explain: unused.
        seed: seeds ``np.random.RandomState`` for ``uniform`` baselines.
        batch_size: most perturbed images per forward pass.
        features_in_step: features replaced per step; must divide ``H * W``.
        perturb_baseline: ``black`` / ``white`` (the image's min / max), ``mean`` (of the
            perturbed image, each step), ``uniform`` (U(0, 1) per image and step) or a number.
        softmax: score softmax probabilities rather than logits.
        normalise, absolute: Quantus's ``normalise`` and ``abs`` of the maps.

    Returns:
        ``[N, C * H * W / features_in_step]`` float64 (float32 scores).
    """
    return _pixel_flipping_curves(
        model, images, maps, labels, seed=seed, batch_size=batch_size,
        features_in_step=features_in_step, perturb_baseline=perturb_baseline, softmax=softmax,
        normalise=normalise, absolute=absolute,
    ).to(torch.float64)  # fmt: skip


def pixel_flipping(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    features_in_step: int = 1,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Area under the Pixel-Flipping curve (lower: more faithful); Quantus's
    ``PixelFlipping(return_auc_per_sample=True)``. Arguments as ``pixel_flipping_curves``.

    Returns:
        ``[N]`` float64: ``np.trapz`` of the float32 curve with unit spacing, in float32.
    """
    curves = _pixel_flipping_curves(
        model, images, maps, labels, seed=seed, batch_size=batch_size,
        features_in_step=features_in_step, perturb_baseline=perturb_baseline, softmax=softmax,
        normalise=normalise, absolute=absolute,
    )  # fmt: skip
    return _auc(curves)


def _patch_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    seed: int | None,
    batch_size: int,
    patch_size: int,
    order: str,
    regions: int | None,
    perturb_baseline: Any,
    softmax: bool,
    normalise: bool,
    absolute: bool,
) -> tuple[Tensor, Tensor]:
    """Scores after replacing ``patch_size`` squares one by one in ``order`` (Quantus's
    ``RegionPerturbation`` and ``Selectivity`` share this game).

    Quantus pads height and width up to multiples of ``patch_size`` (split evenly, the extra
    pixel after), the attributions with zeros and the image by repeating its edge, and tiles the
    padded grid into non-overlapping squares (``view_as_blocks``) spanning all channels. The
    baseline is computed from the padded image, so ``mean`` counts the padding.

    Returns:
        ``([N, T], [N])`` float32, ``T = min(regions, patches)``: the scores after each step,
        and on the unperturbed images.
    """
    order = order.lower()
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; expected one of {ORDERS}")
    n, c, h, w = images.shape
    p = patch_size
    pad_h, pad_w = [(((-d) % p) // 2, -(-((-d) % p) // 2)) for d in (h, w)]
    a = _attributions(maps, images, normalise, absolute)
    a = np.pad(a, ((0, 0), (0, 0), pad_h, pad_w), mode="constant")
    x = images.detach().cpu().to(torch.float32).numpy()
    x = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w), mode="edge")
    hp, wp = a.shape[2:]
    bh, bw = hp // p, wp // p
    patches = bh * bw
    # index of every padded feature, grouped [patch (raster), channel, row, column] as Quantus
    # reads the blocks
    index = np.arange(c * hp * wp).reshape(c, bh, p, bw, p).transpose(1, 3, 0, 2, 4)
    index = index.reshape(patches, c * p * p)
    # Attribution sums in Quantus's dtype, each over a C-contiguous row as Quantus gathers it:
    # NumPy's float32 reduction order depends on the memory layout (a[:, index] alone is not
    # C-contiguous), and a last-bit difference reorders near-ties.
    sums = np.ascontiguousarray(a.reshape(n, -1)[:, index]).sum(axis=-1)
    steps = patches if regions is None else min(regions, patches)
    uniform, perms = _draws(seed, n, steps, patches if order == "random" else None)
    if order == "random":
        ranked = perms
    else:  # Quantus's unstable argsort on the float32 sums, ties in NumPy's order
        ranked = np.argsort(-sums if order == "morf" else sums, axis=-1)
    groups = index[ranked[:, :steps]].transpose(1, 0, 2)  # [T, N, c p p]
    flat = x.reshape(n, -1)
    values = _step_values(flat, groups, perturb_baseline, uniform)
    step = np.full(flat.shape, steps, dtype=np.int64)  # never replaced
    rows = np.arange(n)[:, None]
    for k in range(steps):
        step[rows, groups[k]] = k
    value = np.take_along_axis(values, np.minimum(step, steps - 1), axis=1)
    crop = (slice(None), slice(None), slice(pad_h[0], pad_h[0] + h), slice(pad_w[0], pad_w[0] + w))
    step = np.ascontiguousarray(step.reshape(n, c, hp, wp)[crop])
    value = np.ascontiguousarray(value.reshape(n, c, hp, wp)[crop])
    return _scores_of_steps(
        model,
        images,
        labels,
        torch.from_numpy(step),
        torch.from_numpy(value),
        steps,
        softmax,
        batch_size,
    )


def region_perturbation_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    patch_size: int = 8,
    order: str = "morf",
    regions_evaluation: int = 100,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Region Perturbation curves: the drop of the class score from the unperturbed image's
    after each of the first ``regions_evaluation`` squares is replaced; Quantus's
    ``RegionPerturbation`` output.

    Args:
        model, images, maps, labels, masks, explain, batch_size, perturb_baseline, softmax,
            normalise, absolute: as ``pixel_flipping_curves``.
        seed: seeds ``np.random.RandomState`` for ``order="random"`` and ``uniform``.
        patch_size: side of the squares.
        order: ``morf`` (most relevant first), ``lerf`` (least) or ``random``.
        regions_evaluation: most squares replaced.

    Returns:
        ``[N, min(regions_evaluation, patches)]`` float64 (float32 differences).
    """
    scores, base = _patch_curves(
        model, images, maps, labels, seed=seed, batch_size=batch_size, patch_size=patch_size,
        order=order, regions=regions_evaluation, perturb_baseline=perturb_baseline,
        softmax=softmax, normalise=normalise, absolute=absolute,
    )  # fmt: skip
    return (base[:, None] - scores).to(torch.float64)


def region_perturbation(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    patch_size: int = 8,
    order: str = "morf",
    regions_evaluation: int = 100,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Area under the Region Perturbation curve (``morf``: higher is more faithful).

    Quantus 0.6.0's ``RegionPerturbation`` only returns curves; this is ``calculate_auc`` of
    each, the per-image terms of its ``get_auc_score``. Arguments as
    ``region_perturbation_curves``.

    Returns:
        ``[N]`` float64: ``np.trapz`` of the float32 curve with unit spacing, in float32.
    """
    curves = region_perturbation_curves(
        model, images, maps, labels, seed=seed, batch_size=batch_size, patch_size=patch_size,
        order=order, regions_evaluation=regions_evaluation, perturb_baseline=perturb_baseline,
        softmax=softmax, normalise=normalise, absolute=absolute,
    )  # fmt: skip
    return _auc(curves.to(torch.float32))


def selectivity_curves(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    patch_size: int = 8,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Selectivity curves: the class score after each square, every square, most relevant
    first; Quantus's ``Selectivity`` output. Arguments as ``region_perturbation_curves``.

    Returns:
        ``[N, patches]`` float64 (float32 scores).
    """
    return _patch_curves(
        model, images, maps, labels, seed=seed, batch_size=batch_size, patch_size=patch_size,
        order="morf", regions=None, perturb_baseline=perturb_baseline, softmax=softmax,
        normalise=normalise, absolute=absolute,
    )[0].to(torch.float64)  # fmt: skip


def selectivity(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    patch_size: int = 8,
    perturb_baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
) -> Tensor:
    """Area under the Selectivity curve (lower: more faithful).

    Quantus 0.6.0's ``Selectivity`` only returns curves (cast to float64); this is
    ``calculate_auc`` of each, the per-image terms of its ``get_auc_score``, in float64.
    Arguments as ``selectivity_curves``.

    Returns:
        ``[N]`` float64.
    """
    return _auc(
        selectivity_curves(
            model, images, maps, labels, seed=seed, batch_size=batch_size,
            patch_size=patch_size, perturb_baseline=perturb_baseline, softmax=softmax,
            normalise=normalise, absolute=absolute,
        )
    )  # fmt: skip


def _common(options: dict[str, Any]) -> dict[str, Any]:
    # ``softmax`` is an argument of Quantus's ``__call__``, not of its constructor.
    return {
        "perturb_baseline": options["perturb_baseline"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
    }


_COMMON = {"perturb_baseline": "black", "softmax": True, "normalise": True, "absolute": False}

SPECS: tuple[Spec, ...] = (
    Spec(
        name="pixel_flipping",
        fn=pixel_flipping,
        quantus="PixelFlipping",
        quantus_kwargs=lambda o: {
            "features_in_step": o["features_in_step"],
            **_common(o),
            "return_auc_per_sample": True,
        },
    ),
    Spec(
        name="region_perturbation",
        fn=region_perturbation,
        quantus="RegionPerturbation",
        # Quantus returns the curves (it has no return_auc_per_sample); the score is their AUC
        quantus_kwargs=lambda o: {
            "patch_size": o["patch_size"],
            "order": o["order"],
            "regions_evaluation": o["regions_evaluation"],
            **_common(o),
        },
    ),
    Spec(
        name="selectivity",
        fn=selectivity,
        quantus="Selectivity",
        # Quantus returns the curves (it has no return_auc_per_sample); the score is their AUC
        quantus_kwargs=lambda o: {"patch_size": o["patch_size"], **_common(o)},
    ),
)

"""Faithfulness of saliency maps: does the classifier's score follow what the map calls important?

Four families, each a ``torchmetrics.Metric`` (sum states, synced across DDP ranks) over
batched torch on the images' device:

- ``AverageDropIncrease``: Average Drop % and % Increase in Confidence (Chattopadhyay et al.,
  Grad-CAM++, WACV 2018): the class score on ``image * map`` against the score on ``image``.
  Average Drop divides the drop by the original score, as the paper and torchcam's
  ``ClassificationMetric`` do; pytorch-grad-cam's ``DropInConfidence`` returns the
  unnormalised ``max(0, score - masked score)`` per image (``confidence_scores`` gives both).
- ``DeletionInsertion``: the deletion and insertion games of RISE (Petsiuk et al., BMVC 2018):
  area under the class score while the most salient pixels are replaced by a baseline
  (deletion), or restored into a baseline (insertion), against the fraction of pixels changed,
  with the points and trapezoid of torchcam's ``DeletionInsertionMetric``.
- ``ROAD``: RemOve And Debias (Rong et al., ICML 2022) as pytorch-grad-cam's
  ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage`` / ``ROADCombined``: pixels
  above (MoRF) or below (LeRF) a percentile of the map are replaced by the noisy linear
  imputation (each removed pixel the weighted mean of its 8 neighbours, a sparse linear system,
  plus Gaussian noise), and the score change is averaged over the percentiles.
- ``PointingGame`` (Zhang et al., ECCV 2016; TorchRay's rule): a hit when the map's maximum
  lies within ``tolerance`` pixels of the ground truth (boxes or a mask).

Saliency maps are ``[N, H, W]`` at the images' resolution; Average Drop multiplies the image by
the map, so maps should lie in [0, 1] (min-max normalised, as ``cams_to_scoremaps`` and both
peer libraries produce them). Scores are the softmax probability of the target class
(``score="softmax"``, the peers' usual ``ClassifierOutputSoftmaxTarget`` / ``logits_fn``) or
its raw logit (``score="logit"``). Models are run in eval mode under ``torch.no_grad`` (their
train/eval mode is restored), in chunks of at most ``batch_size`` images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from camlab.evalmode import eval_mode

SCORES = ("softmax", "logit")
BASELINES = ("zeros", "blur")
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


# --------------------------------------------------------------------------------------------
# Class scores
# --------------------------------------------------------------------------------------------


def _forward(model: nn.Module, images: Tensor) -> Tensor:
    """``model(images)``, 4-D batches fed channels-last: ~1.25x faster on the CPU (oneDNN)
    and what convolutional nets prefer on GPUs; logits within float32 rounding of NCHW."""
    if images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return model(images)


def select_scores(logits: Tensor, targets: Tensor, score: str = "softmax") -> Tensor:
    """The target class's score of each row.

    Args:
        logits: ``[N, K]`` model outputs.
        targets: ``[N]`` class indices.
        score: ``softmax`` (probability) or ``logit`` (raw output).

    Returns:
        float32 ``[N]``.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r}; expected one of {SCORES}")
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


# --------------------------------------------------------------------------------------------
# Average Drop / Increase in Confidence
# --------------------------------------------------------------------------------------------


def confidence_scores(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: Tensor,
    score: str = "softmax",
    batch_size: int = 64,
    logits: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Scores on the images and on the images multiplied by their maps (Grad-CAM++'s test).

    ``max(0, base - masked)`` is pytorch-grad-cam's ``DropInConfidence``, ``masked > base``
    its ``IncreaseInConfidence``; Average Drop divides the drop by ``base``.

    Args:
        model: classifier.
        images: ``[N, C, H, W]``.
        saliency: ``[N, H, W]`` maps in [0, 1] at the images' resolution.
        targets: ``[N]`` class of each map.
        score: ``softmax`` or ``logit``.
        batch_size: most images per forward pass.
        logits: the model's ``[N, K]`` outputs on ``images`` if already computed (saves a pass).

    Returns:
        ``(base, masked)``, float32 ``[N]`` each.
    """
    maps = _as_maps(saliency, images)
    base = _base_scores(model, images, targets, score, batch_size, logits)
    masked = class_scores(model, images * maps[:, None], targets, score, batch_size)
    return base, masked


class AverageDropIncrease(Metric):
    """Average Drop % and % Increase in Confidence (Grad-CAM++), averaged over images.

    For each image, ``Y`` = score of the target class, ``O`` = the same score on
    ``image * map``: drop ``max(0, Y - O) / Y`` (the ``1e-7`` guard of torchcam), increase
    ``O > Y``. ``compute()`` returns percent: ``average_drop`` (lower is better) and
    ``increase_in_confidence`` (higher is better).

    Args:
        score: ``softmax`` or ``logit``.
        batch_size: most images per forward pass.
    """

    full_state_update = False

    def __init__(self, score: str = "softmax", batch_size: int = 64, **kwargs) -> None:
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"score={score!r}; expected one of {SCORES}")
        self.score, self.batch_size = score, batch_size
        for name in ("drop", "increase", "total"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        saliency: Tensor,
        targets: Tensor,
        logits: Tensor | None = None,
    ) -> None:
        """Scores ``model`` on ``images`` ``[N, C, H, W]`` and ``images * saliency``.

        Args:
            model: classifier.
            images: ``[N, C, H, W]``.
            saliency: ``[N, H, W]`` in [0, 1].
            targets: ``[N]`` classes.
            logits: ``[N, K]`` outputs on ``images`` if already computed.
        """
        base, masked = confidence_scores(
            model, images, saliency, targets, self.score, self.batch_size, logits
        )
        drop = (base - masked).clamp_min(0) / (base + 1e-7)
        self.drop += drop.double().sum().to(self.drop.device)
        self.increase += (masked > base).double().sum().to(self.drop.device)
        self.total += len(base)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.clamp_min(1)
        return {
            "average_drop": 100 * self.drop / total,
            "increase_in_confidence": 100 * self.increase / total,
        }


# --------------------------------------------------------------------------------------------
# Deletion / insertion (RISE)
# --------------------------------------------------------------------------------------------


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's insertion blur: ``scipy.ndimage.gaussian_filter`` of a centred delta.

    SciPy's filter (truncated at 4 sigma, ``reflect`` boundary) folds the Gaussian's tails back
    into the ``size x size`` window, so the kernel is not a plain sampled Gaussian; this
    reproduces it in float64 without SciPy.

    Returns:
        float32 ``[size, size]`` summing to 1.
    """
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * taps**2 / sigma**2)
    weights /= weights.sum()
    centre = size // 2
    kernel = np.zeros(size, dtype=np.float64)
    for i in range(size):
        for t, w in zip(taps.astype(int), weights, strict=True):
            q = (i + t) % (2 * size)  # 'reflect' (d c b a | a b c d | d c b a) has period 2n
            q = q if q < size else 2 * size - 1 - q
            if q == centre:
                kernel[i] += w
    return torch.from_numpy(np.outer(kernel, kernel).astype(np.float32))


def rise_blur(images: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's insertion substrate: each channel convolved with ``rise_blur_kernel``, zero pad.

    Args:
        images: ``[N, C, H, W]``.

    Returns:
        ``[N, C, H, W]``.
    """
    channels = images.shape[1]
    kernel = rise_blur_kernel(size, sigma).to(images)
    weight = kernel.expand(channels, 1, size, size)
    return F.conv2d(images, weight, padding=size // 2, groups=channels)


def _baseline(images: Tensor, kind: str) -> Tensor:
    if kind == "zeros":
        return torch.zeros_like(images)
    if kind == "blur":
        return rise_blur(images)
    raise ValueError(f"baseline={kind!r}; expected one of {BASELINES}")


def perturbation_counts(num_pixels: int, steps: int) -> list[int]:
    """Pixels changed at each point of a deletion / insertion curve: ``0, s, 2s, ..., HW``.

    ``s = ceil(HW / steps)`` (RISE's ``step`` pixels per step; torchcam's points), so the
    curve has ``ceil(HW / s) + 1`` points.
    """
    if steps <= 0:
        raise ValueError(f"steps={steps}; expected a positive integer")
    step = -(-num_pixels // steps)
    return [*range(0, num_pixels, step), num_pixels]


def deletion_insertion_curves(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: Tensor,
    steps: int = 20,
    score: str = "softmax",
    deletion_baseline: str = "zeros",
    insertion_baseline: str = "zeros",
    batch_size: int = 64,
    logits: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Class score while the most salient pixels are deleted, or inserted, step by step.

    Pixels are ranked by decreasing saliency (stable: ties in raster order); at a point that
    changes ``k`` pixels, deletion shows the baseline on the top ``k`` and the image elsewhere,
    insertion the image on the top ``k`` and the baseline elsewhere, all channels alike.

    Args:
        model: classifier.
        images: ``[N, C, H, W]``.
        saliency: ``[N, H, W]`` at the images' resolution.
        targets: ``[N]`` classes.
        steps: at most this many perturbation steps (``perturbation_counts``).
        score: ``softmax`` or ``logit``.
        deletion_baseline / insertion_baseline: ``zeros`` (torchcam's, RISE's deletion) or
            ``blur`` (RISE's insertion: ``rise_blur`` of the image).
        batch_size: most perturbed images per forward pass.
        logits: ``[N, K]`` outputs on ``images`` if already computed.

    Returns:
        ``(fractions [T], deletion [N, T], insertion [N, T])``: fraction of pixels changed,
        and the float32 scores at each point.
    """
    maps = _as_maps(saliency, images)
    targets = targets.to(images.device)
    n, channels, height, width = images.shape
    counts = perturbation_counts(height * width, steps)
    points = len(counts)
    device = images.device
    # rank[i] = position of pixel i in decreasing-saliency order
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.argsort(order, dim=1)
    flat = images.flatten(2)
    del_base = _baseline(images, deletion_baseline).flatten(2)
    ins_base = _baseline(images, insertion_baseline).flatten(2)
    deletion = torch.empty(n, points, device=device)
    insertion = torch.empty(n, points, device=device)
    deletion[:, 0] = insertion[:, -1] = _base_scores(
        model, images, targets, score, batch_size, logits
    )
    shared = deletion_baseline == insertion_baseline  # all-baseline image is both ends
    # (curve, point) jobs per image; curve 0 deletion, 1 insertion, 2 the shared end point
    jobs = [(0, j) for j in range(1, points - (1 if shared else 0))]
    jobs += [(1, j) for j in range(1 if shared else 0, points - 1)]
    if shared:
        jobs.append((2, points - 1))
    curve = torch.tensor([c for c, _ in jobs], device=device)
    point = torch.tensor([j for _, j in jobs], device=device)
    count = torch.tensor(counts, device=device)[point]
    per_image = len(jobs)
    all_jobs = n * per_image
    with eval_mode(model):
        for start in range(0, all_jobs, batch_size):
            idx = torch.arange(start, min(start + batch_size, all_jobs), device=device)
            img, job = idx // per_image, idx % per_image
            changed = (ranks[img] < count[job, None])[:, None]  # [J, 1, HW]
            is_ins = (curve[job] == 1)[:, None, None]
            baseline = torch.where(is_ins, ins_base[img], del_base[img])
            # deletion: baseline where changed; insertion: image where changed
            use_image = torch.where(is_ins, changed, ~changed)
            batch = torch.where(use_image, flat[img], baseline)
            scores = select_scores(
                _forward(model, batch.view(-1, channels, height, width)), targets[img], score
            )
            c, j = curve[job], point[job]
            on_del, on_ins = c != 1, c >= 1
            deletion[img[on_del], j[on_del]] = scores[on_del]
            insertion[img[on_ins], torch.where(c[on_ins] == 2, 0, j[on_ins])] = scores[on_ins]
    fractions = torch.tensor(counts, device=device, dtype=torch.float32) / (height * width)
    return fractions, deletion, insertion


class DeletionInsertion(Metric):
    """RISE deletion and insertion AUCs, averaged over images.

    Per image: the trapezoid area under the target-class score against the fraction of pixels
    deleted (lower is better: the score falls as soon as the salient pixels go) or inserted
    (higher is better). In [0, 1] with ``score="softmax"``.

    Args:
        steps: perturbation steps per curve (RISE: ``H * W / 224`` at 224 px; torchcam: 20).
        score: ``softmax`` or ``logit``.
        deletion_baseline: ``zeros`` (RISE and torchcam).
        insertion_baseline: ``blur`` (RISE) or ``zeros`` (torchcam).
        batch_size: most perturbed images per forward pass.
    """

    full_state_update = False

    def __init__(
        self,
        steps: int = 20,
        score: str = "softmax",
        deletion_baseline: str = "zeros",
        insertion_baseline: str = "blur",
        batch_size: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        perturbation_counts(1, steps)  # validates steps
        for kind in (deletion_baseline, insertion_baseline):
            if kind not in BASELINES:
                raise ValueError(f"baseline={kind!r}; expected one of {BASELINES}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}; expected one of {SCORES}")
        self.steps, self.score, self.batch_size = steps, score, batch_size
        self.deletion_baseline, self.insertion_baseline = deletion_baseline, insertion_baseline
        for name in ("deletion", "insertion", "total"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        saliency: Tensor,
        targets: Tensor,
        logits: Tensor | None = None,
    ) -> None:
        """Adds the AUCs of ``images`` ``[N, C, H, W]`` with maps ``saliency`` ``[N, H, W]``."""
        fractions, deletion, insertion = deletion_insertion_curves(
            model, images, saliency, targets, self.steps, self.score,
            self.deletion_baseline, self.insertion_baseline, self.batch_size, logits,
        )  # fmt: skip
        device = self.total.device
        self.deletion += torch.trapezoid(deletion, fractions, dim=1).double().sum().to(device)
        self.insertion += torch.trapezoid(insertion, fractions, dim=1).double().sum().to(device)
        self.total += len(images)

    def compute(self) -> dict[str, Tensor]:
        total = self.total.clamp_min(1)
        return {"deletion_auc": self.deletion / total, "insertion_auc": self.insertion / total}


# --------------------------------------------------------------------------------------------
# ROAD: noisy linear imputation
# --------------------------------------------------------------------------------------------

# The 8 neighbours' weights of ROAD's imputation (pytorch-grad-cam's ``neighbors_weights``).
_STENCIL = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def _box121(x: Tensor) -> Tensor:
    """``[1 2 1]^T [1 2 1]`` filter of the last two dims, zero outside (two 3-tap passes).

    The imputation's neighbour weights are this filter / 12 minus its centre (4 / 12), and
    the separable passes are several times faster on the CPU than a depthwise convolution.
    """
    xp = F.pad(x, (1, 1, 1, 1))
    rows = torch.add(xp[..., :, :-2] + xp[..., :, 2:], xp[..., :, 1:-1], alpha=2)
    return torch.add(rows[..., :-2, :] + rows[..., 2:, :], rows[..., 1:-1, :], alpha=2)


def _neighbour_sum(x: Tensor) -> Tensor:
    """``sum_o w_o x[i + o]`` over the 8 neighbours (zero outside the image)."""
    return (_box121(x) - 4 * x) / 12


class _Operator:
    """``x -> s x - removed * sum_o w_o x[i + o]`` for ``x`` zero outside the removed pixels,
    as ``d x - (removed / 12) box121(x)`` with ``d = s + removed / 3`` (fewer passes)."""

    def __init__(self, removed: Tensor, in_image: Tensor) -> None:
        self.diag = in_image + removed / 3
        self.weight = removed / 12

    def __call__(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.diag * x, self.weight, _box121(x), value=-1)


def _stencil_apply(coef: Sequence[Tensor], x: Tensor) -> Tensor:
    """Variable 9-point stencil: ``y[i] = sum_k coef[k][i] x[i + offset_k]``.

    Args:
        coef: 9 contiguous ``[N, 1, h, w]`` (offset ``k`` = ``_OFFSETS[k]``).
        x: ``[N, C, h, w]``.
    """
    h, w = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    y = coef[4] * x
    for k, (dy, dx) in enumerate(_OFFSETS):
        if k != 4:
            y.addcmul_(coef[k], xp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w])
    return y


def _restrict(x: Tensor) -> Tensor:
    """Sum over 2x2 blocks (``P^T``), odd sizes padded with zeros; strided adds are several
    times faster on the CPU than a reshape-and-sum."""
    x = _pad_even(x)
    x = x[..., 0::2, :] + x[..., 1::2, :]
    return x[..., 0::2] + x[..., 1::2]


def _prolong(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Each coarse cell copied to its 2x2 children (``P``), cropped to ``size``."""
    return F.interpolate(x, scale_factor=2, mode="nearest")[..., : size[0], : size[1]]


def _pad_even(x: Tensor) -> Tensor:
    return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


def _coarsen(coef: Tensor) -> Tensor:
    """Galerkin operator ``P^T A P`` of a 9-point stencil for 2x2 aggregation (still 9-point).

    ``P`` copies a coarse cell to its 2x2 children, so the coarse coefficient between cells
    ``I`` and ``I + d`` sums the fine couplings from the children of ``I`` to those of
    ``I + d``: a child at parity ``p`` coupled through offset ``o`` lands in ``d = (p + o) // 2``.
    """
    n = coef.shape[0]
    fine = _pad_even(coef)
    hc, wc = fine.shape[-2] // 2, fine.shape[-1] // 2
    fine = fine.view(n, 9, hc, 2, wc, 2)
    coarse = coef.new_zeros(n, 9, hc, wc)
    for k, (oy, ox) in enumerate(_OFFSETS):
        for py in (0, 1):
            for px in (0, 1):
                d = ((py + oy) // 2 + 1) * 3 + (px + ox) // 2 + 1
                coarse[:, d] += fine[:, k, :, py, :, px]
    return coarse


def _dense_inverse(coef: Tensor) -> Tensor:
    """Inverse of the (small) matrix of a 9-point stencil ``[N, 9, h, w]``, ``[N, hw, hw]``.

    Cells outside the system (empty rows) get a unit diagonal, then a zero row and column in
    the inverse, so they stay at 0.
    """
    n, _, h, w = coef.shape
    cells = h * w
    matrix = coef.new_zeros(n, cells, cells, dtype=torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=coef.device), torch.arange(w, device=coef.device), indexing="ij"
    )
    ys, xs = ys.flatten(), xs.flatten()
    for k, (dy, dx) in enumerate(_OFFSETS):
        ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        rows, cols = (ys * w + xs)[ok], ((ys + dy) * w + xs + dx)[ok]
        matrix[:, rows, cols] = coef[:, k].flatten(1)[:, rows].double()
    active = matrix.diagonal(dim1=1, dim2=2) > 0
    matrix = matrix + torch.diag_embed((~active).double())
    inverse = torch.linalg.inv(matrix) * (active[:, :, None] & active[:, None, :])
    return inverse.to(coef.dtype)


class _Multigrid:
    """Symmetric V-cycle preconditioner for the ROAD imputation system: 2x2 aggregation,
    Galerkin coarse stencils (``_coarsen``), one damped-Jacobi sweep before and after each
    coarse correction (over-corrected by 1.6, which piecewise-constant aggregation needs), an
    exact solve on the coarsest grid (at most 64 cells).

    Plain CG needs about as many iterations as the largest hole is wide (hundreds at 224 px);
    preconditioned, about 20 at any size. It runs in float32: it only steers CG, whose float64
    residuals set the accuracy.

    Args:
        removed: ``[N, 1, H, W]`` float32, 1 on the unknowns.
        in_image: ``[N, 1, H, W]`` float32, the diagonal (weight of the in-image neighbours).
    """

    def __init__(self, removed: Tensor, in_image: Tensor, omega=0.9, overcorrect=1.6) -> None:
        self.removed, self.fine = removed, _Operator(removed, in_image)
        n, _, h, w = removed.shape
        coef = removed.new_zeros(n, 9, h, w)
        padded = F.pad(removed[:, 0], (1, 1, 1, 1))
        for k, (dy, dx) in enumerate(_OFFSETS):
            if k != 4:
                neighbour = padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                coef[:, k] = -_STENCIL[dy + 1][dx + 1] * removed[:, 0] * neighbour
        coef[:, 4] = in_image[:, 0]
        # The finest level uses the constant stencil (_neighbour_sum, fast); its variable
        # coefficients are only needed to build the coarse levels.
        self.levels = []
        while True:
            coef = _coarsen(coef)
            if coef.shape[-2] * coef.shape[-1] <= 64:
                self.coarsest = _dense_inverse(coef)
                break
            self.levels.append([coef[:, k : k + 1].contiguous() for k in range(9)])
        self.inv_diag = [torch.where(in_image > 0, omega / in_image.clamp_min(1e-30), 0.0)]
        for c in self.levels:
            self.inv_diag.append(torch.where(c[4] > 0, omega / c[4].clamp_min(1e-30), 0.0))
        self.overcorrect = overcorrect

    def _apply(self, level: int, x: Tensor) -> Tensor:
        if level == 0:
            return self.fine(x * self.removed)
        return _stencil_apply(self.levels[level - 1], x)

    def __call__(self, r: Tensor) -> Tensor:
        return self._cycle(0, r.float()).to(r.dtype)

    def _cycle(self, level: int, r: Tensor) -> Tensor:
        h, w = r.shape[-2:]
        if level == len(self.levels) + 1:
            n, c = r.shape[:2]
            flat = torch.bmm(self.coarsest, r.reshape(n, c, h * w).transpose(1, 2))
            return flat.transpose(1, 2).reshape(n, c, h, w)
        inv_diag = self.inv_diag[level]
        x = inv_diag * r
        coarse = self._cycle(level + 1, _restrict(r - self._apply(level, x)))
        up = _prolong(coarse, (h, w))
        if level == 0:  # the fine result must vanish on kept pixels (CG's subspace)
            up = up * self.removed
        x = x.add_(up, alpha=self.overcorrect)
        return x.addcmul_(inv_diag, r - self._apply(level, x))


def noisy_linear_impute(
    images: Tensor,
    keep: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-7,
    max_iter: int = 500,
) -> Tensor:
    """ROAD's noisy linear imputation: every removed pixel becomes the weighted mean of its
    in-image 8 neighbours (1/6 edge, 1/12 corner, renormalised at the border), plus noise.

    The removed pixels' values solve one sparse symmetric positive definite system per image
    (the negated system pytorch-grad-cam's ``NoisyLinearImputer`` builds and solves with
    SciPy's ``spsolve``), shared by the channels; here it is solved for the whole batch on the
    images' device by multigrid-preconditioned conjugate gradients (float32 iterations, float64
    residuals and solution), to a relative residual of ``tol`` (1e-7: within a few float32
    ulps of the direct solve; the tests ask for 1e-6). An image with no
    kept pixel has no such system (the peer's matrix is singular) and imputes to 0 + noise.

    Args:
        images: ``[N, C, H, W]``.
        keep: ``[N, H, W]`` bool, True where the pixel is kept.
        noise: standard deviation of the Gaussian noise added to imputed pixels (0.01: ROAD's).
        generator: random generator for the noise (the images' device), or the global one.
        tol: relative residual at which CG stops (per image and channel).
        max_iter: CG iteration cap.

    Returns:
        ``[N, C, H, W]`` in the images' dtype: kept pixels unchanged.
    """
    if keep.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"keep {tuple(keep.shape)} must be [N, H, W] for {tuple(images.shape)}")
    keep = keep.to(images.device).bool()[:, None]  # [N, 1, H, W]
    solvable = keep.flatten(1).any(dim=1)[:, None, None, None]
    removed = (~keep & solvable).double()  # no unknowns in images without any kept pixel
    known = images.double() * keep
    # A x = s x - removed * W(x) for x supported on removed pixels, s = in-image weight sum
    in_image = _neighbour_sum(torch.ones_like(removed)) * removed
    rhs = _neighbour_sum(known) * removed

    precondition = _Multigrid(removed.float(), in_image.float())
    operator = _Operator(removed, in_image)
    x = _pcg(operator, precondition.fine, rhs, precondition, tol, max_iter)
    out = known + x
    if noise:
        draw = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        out = out + noise * draw * ~keep
    return out.to(images.dtype)


def _pcg(
    operator, operator32, rhs: Tensor, precondition, tol: float, max_iter: int, refresh: int = 5
) -> Tensor:
    """Preconditioned conjugate gradients, one system per ``[n, c]`` plane of ``rhs``, in mixed
    precision ("reliable updates"): the iterations run in float32, and every ``refresh``
    iterations (or when the float32 residual says converged) the updates are added to the
    float64 solution and the residual is recomputed from it in float64. The float64 residual
    sets the accuracy; float32 halves the memory traffic of every other pass.

    Args:
        operator / operator32: ``x -> A x`` in float64 / float32.
        rhs: float64 ``[n, c, h, w]``.
        precondition: ``r -> M^-1 r`` (float32), symmetric positive definite.
        tol: stop when every plane's float64 residual is within ``tol`` of its ``rhs`` norm.

    Returns:
        float64 solution.
    """
    n, c, h, w = rhs.shape

    def dot(a: Tensor, b: Tensor) -> Tensor:  # per-plane dot products as one batched GEMV
        return torch.bmm(a.view(n * c, 1, h * w), b.view(n * c, h * w, 1)).view(n, c, 1, 1)

    target = tol * rhs.flatten(-2).norm(dim=-1)  # [n, c]

    def converged(residual: Tensor) -> bool:
        return bool((dot(residual, residual).view(n, c).sqrt() <= target).all())

    x = torch.zeros_like(rhs)
    if converged(rhs):
        return x
    dx = torch.zeros(rhs.shape, device=rhs.device, dtype=torch.float32)
    r = rhs.float()
    z = precondition(r)
    p = z
    rz = dot(r, z)
    for step in range(1, max_iter + 1):
        ap = operator32(p)
        # a converged plane (r == 0) has rz == 0: the guards keep it at rest instead of NaN
        alpha = rz / dot(p, ap).clamp_min(1e-30)
        dx.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        if step % refresh == 0 or converged(r.double()):
            x += dx
            dx.zero_()
            true = rhs - operator(x)
            if converged(true):
                return x
            r = true.float()
        z = precondition(r)
        rz_next = dot(r, z)
        p = torch.addcmul(z, rz_next / rz.clamp_min(1e-30), p)
        rz = rz_next
    return x + dx


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
        if score not in SCORES:
            raise ValueError(f"score={score!r}; expected one of {SCORES}")
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


# --------------------------------------------------------------------------------------------
# Pointing game
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# All of them
# --------------------------------------------------------------------------------------------


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

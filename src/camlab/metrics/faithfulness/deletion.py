"""The deletion and insertion games of RISE (Petsiuk et al., BMVC 2018).

Area under the class score while the most salient pixels are replaced by a baseline (deletion),
or restored into a baseline (insertion), against the fraction of pixels changed, with the points
and trapezoid of torchcam's ``DeletionInsertionMetric``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from camlab.evalmode import eval_mode
from camlab.metrics.faithfulness.scores import (
    BASELINES,
    _as_maps,
    _base_scores,
    _forward,
    check_score,
    select_scores,
)


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
        check_score(score)
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

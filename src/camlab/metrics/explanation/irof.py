"""Iterative Removal Of Features (IROF; Rieger & Hansen, arXiv:2003.08747).

Superpixels (SLIC) are removed one after another, most attributed (mean attribution) first, by
replacing them with a baseline; the score is the area over the curve of the target score
relative to the unperturbed one. A faithful map removes what the model needs first, so the
curve drops early and the area over it is large.

Reproduces Quantus 0.6.0's ``IROF`` per image; the perturbed forwards run stacked in chunks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.metrics.explanation.base import Spec, quantus_preprocess
from camlab.metrics.explanation.correlation import target_scores

BASELINES = ("mean", "black", "white", "uniform")


def superpixels(images: Tensor, method: str = "slic") -> list[np.ndarray]:
    """Quantus's ``get_superpixel_segments``: scikit-image SLIC (labels from 0) or Felzenszwalb.

    Args:
        images: ``[N, C, H, W]``.

    Returns:
        ``N`` integer label arrays ``[H, W]``.
    """
    from skimage.segmentation import felzenszwalb, slic

    if method not in ("slic", "felzenszwalb"):
        raise ValueError(f"segmentation_method={method!r}; expected 'slic' or 'felzenszwalb'")
    out = []
    for image in images.detach().cpu().numpy():
        img = np.moveaxis(image, 0, -1).astype("double")  # channels last, float64, as Quantus
        out.append(slic(img, start_label=0) if method == "slic" else felzenszwalb(img))
    return out


def _segment_order(segments: np.ndarray, attribution: np.ndarray, channels: int) -> np.ndarray:
    """Segments ``0 .. K-1`` (``K`` distinct labels) by descending mean attribution.

    Quantus averages its float32 map (broadcast over channels) over each label in ``range(K)``
    with ``np.mean`` and sorts ``-means`` with NumPy's ``argsort``. Grad-CAM maps have flat
    regions, so many segments tie but for float32 rounding, which depends on the pixel count
    and NumPy's pairwise summation; the order is only Quantus's if the means are NumPy's own
    float32 means of the same arrays, so they are computed that way (pixels of one segment are
    a slice of the label-sorted image; one pass, not one mask per segment).

    Args:
        segments: ``[H, W]`` labels.
        attribution: ``[H, W]`` float32 (Quantus's dtype).
        channels: ``C``: Quantus averages ``C`` copies of each pixel.

    Returns:
        ``[K]`` segment labels, most attributed first.
    """
    k = len(np.unique(segments))
    if k <= 1:
        raise ValueError("the segmentation must give more than one segment")
    labels = segments.ravel()
    by_label = np.argsort(labels, kind="stable")  # row-major within a segment, as a mask takes
    values = attribution.ravel()[by_label]
    ends = np.searchsorted(labels[by_label], np.arange(k + 1), side="left")
    means = np.zeros(k)  # float64 holding float32 means, as Quantus's ``att_segs``
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a missing label: NaN, as in Quantus
        for s in range(k):
            v = values[ends[s] : ends[s + 1]]
            means[s] = np.mean(np.tile(v, channels) if channels > 1 else v)
    return np.argsort(-means)


def irof(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Any = None,
    seed: int | None = None,
    batch_size: int = 256,
    segmentation_method: str = "slic",
    perturb_baseline: str | float = "mean",
    normalise: bool = True,
    absolute: bool = False,
    softmax: bool = True,
    uniform_low: float = 0.0,
    uniform_high: float = 1.0,
    call_batch_size: int = 64,
) -> Tensor:
    """Quantus's ``IROF`` per image.

    Step ``t`` replaces the ``t``-th most attributed segment of every image (on top of the
    previous steps) with the baseline and scores ``f(x_t) / f(x)``. The AOC is
    ``K - trapz(curve)``, where, as in Quantus, each call batch of ``call_batch_size`` images
    runs ``L`` = its largest segment count steps and an image with ``K < L`` segments has its
    curve padded with zeros, so the trapezoid also takes the drop to zero after its last point.

    Quantus's ``baseline_replacement_by_mask`` computes the baseline on the whole call batch's
    current (already perturbed) images: ``mean`` / ``black`` / ``white`` are their mean / min /
    max over every image, channel and pixel, recomputed at each step; ``uniform`` draws
    ``np.random.uniform(low, high, [B, C, H, W])`` at each step (drawn here lazily in the same
    order, so an ImageNet batch's noise is never all in memory).

    Args:
        model: eval-mode classifier on ``[N, C, H, W]`` float32.
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` attributions.
        labels: ``[N]`` target classes.
        masks: unused.
        explain: unused.
        seed: seeds ``np.random.RandomState`` (``uniform`` baseline only).
        batch_size: images per forward.
        segmentation_method: ``slic`` or ``felzenszwalb`` (scikit-image defaults).
        perturb_baseline: ``mean``, ``black``, ``white``, ``uniform`` or a number.
        normalise: Quantus's ``normalise`` (batch-wide division by the max).
        absolute: Quantus's ``abs``.
        softmax: score softmax probabilities (Quantus's ``__call__`` default here) or logits.
        uniform_low: lower bound of the ``uniform`` baseline.
        uniform_high: upper bound of the ``uniform`` baseline.
        call_batch_size: Quantus's ``__call__`` ``batch_size`` (sets baselines and padding).

    Returns:
        ``[N]`` float64.
    """
    del masks, explain
    n = len(images)
    device = images.device
    kind = perturb_baseline.lower() if isinstance(perturb_baseline, str) else perturb_baseline
    if isinstance(kind, str) and kind not in BASELINES:
        raise ValueError(f"perturb_baseline={kind!r}; expected a number or one of {BASELINES}")
    a = quantus_preprocess(maps, normalise, absolute).to(maps.dtype).cpu().numpy()
    segments = superpixels(images, segmentation_method)
    orders = [_segment_order(s, m, images.shape[1]) for s, m in zip(segments, a, strict=True)]
    counts = torch.tensor([len(o) for o in orders], dtype=torch.int64)
    rng = np.random.RandomState(seed)
    labels = labels.to(device)

    def pieces() -> Iterator[tuple[Tensor, Tensor]]:
        # Each call batch evolves its own images: the baseline depends on all of them.
        for start in range(0, n, call_batch_size):
            stop = min(start + call_batch_size, n)
            steps = max(len(o) for o in orders[start:stop])
            order = torch.full((stop - start, steps), -1, dtype=torch.int64)
            for j, o in enumerate(orders[start:stop]):
                order[j, : len(o)] = torch.from_numpy(o)
            order = order.to(device)
            seg = torch.from_numpy(np.stack(segments[start:stop])).to(device, torch.int64)
            # float64 holds both NumPy's float32 images and float64 uniform draws exactly;
            # Quantus's torch.Tensor(x) rounds to float32 at the forward, as .float() does.
            state = images[start:stop].to(torch.float64)
            live = counts[start:stop].to(device)
            for t in range(steps):
                mask = (seg == order[:, t, None, None])[:, None]
                if kind == "mean":
                    # NumPy's float32 pairwise mean of the batch: a float64 mean differs in the
                    # last bits and IROF's long cumulative curves carry that to ~1e-4.
                    mean = np.mean(state.to(torch.float32).cpu().numpy())
                    base = torch.tensor(float(mean), dtype=torch.float64, device=device)
                elif kind == "black":
                    base = state.min()
                elif kind == "white":
                    base = state.max()
                elif kind == "uniform":
                    draw = rng.uniform(uniform_low, uniform_high, size=tuple(state.shape))
                    base = torch.from_numpy(draw).to(device)
                else:
                    base = torch.tensor(float(kind), dtype=torch.float64, device=device)
                state = torch.where(mask, base, state)
                # Images already out of segments are unchanged: their padded points are zero.
                real = live > t
                yield state[real].to(torch.float32), labels[start:stop][real]

    y = target_scores(model, [(images.to(torch.float32), labels)], softmax, batch_size)
    y_perturbed = target_scores(model, pieces(), softmax, batch_size)

    aoc = torch.empty(n, dtype=torch.float64)
    offset = 0
    for start in range(0, n, call_batch_size):
        stop = min(start + call_batch_size, n)
        live = counts[start:stop]
        steps = int(live.max())
        # The forwards came step by step over the batch's images still with segments left.
        real = torch.arange(steps)[None, :] < live[:, None]  # [B, L]
        curve = torch.zeros(stop - start, steps, dtype=torch.float32)
        flat = real.T.reshape(-1).nonzero()[:, 0]
        values = y_perturbed[offset : offset + len(flat)].cpu()
        offset += len(flat)
        step, image = flat // (stop - start), flat % (stop - start)
        # Quantus divides in float32; padded points are 0 * (last ratio), NaN included.
        curve[image, step] = values / y[start:stop].cpu()[image]
        last = curve[torch.arange(stop - start), live - 1]
        curve = torch.where(real, curve, last[:, None] * 0.0).to(torch.float64)
        aoc[start:stop] = live.to(torch.float64) - torch.trapezoid(curve, dx=1.0, dim=1)
    return aoc


def _irof_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "segmentation_method": options["segmentation_method"],
        "perturb_baseline": options["perturb_baseline"],
        "perturb_func_kwargs": {
            "uniform_low": options["uniform_low"],
            "uniform_high": options["uniform_high"],
        },
        "normalise": options["normalise"],
        "abs": options["absolute"],
        "return_aggregate": False,
    }


SPECS: tuple[Spec, ...] = (
    Spec(
        name="irof",
        fn=irof,
        quantus="IROF",
        quantus_kwargs=_irof_kwargs,
        random=True,
    ),
)

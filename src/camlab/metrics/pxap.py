"""Pixel average precision (PxAP) from global score histograms."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from camlab.metrics.jit import numba
from camlab.metrics.thresholds import cam_thresholds
from camlab.metrics.validation import check_scoremaps
from camlab.protocol import CAM_CURVE_INTERVAL


@numba.njit(cache=True, nogil=True)
def accumulate_histograms(scores, masks, ignore, edges, pos, neg) -> None:
    """Add every pixel's score to the positive or negative histogram, as ``np.histogram``.

    One pass instead of boolean indexing plus a sort per histogram; the bin of x is the i with
    edges[i] <= x < edges[i + 1] (the last bin also takes x == edges[-1]), found from a guess and
    exact comparisons with the same float64 edges, so counts equal ``np.histogram``'s.

    Args:
        scores: float array [P] (all pixels of a batch, flattened).
        masks: array [P]; nonzero = positive.
        ignore: array [P] (nonzero: not a negative) or an empty array for none.
        edges: float64 array [B + 1], increasing; the guess assumes the first bins uniform.
        pos, neg: int64 arrays [B], incremented in place.
    """
    n_bins = edges.size - 1
    lo, hi = edges[0], edges[n_bins]
    scale = 1.0 / (edges[1] - lo)
    has_ignore = ignore.size > 0
    for j in range(scores.size):
        positive = masks[j] != 0
        if not positive and has_ignore and ignore[j] != 0:
            continue
        x = np.float64(scores[j])
        if not (lo <= x <= hi):  # also drops NaN, like np.histogram
            continue
        i = min(max(int(min((x - lo) * scale, n_bins)), 0), n_bins - 1)
        while i > 0 and edges[i] > x:
            i -= 1
        while i < n_bins - 1 and edges[i + 1] <= x:
            i += 1
        if positive:
            pos[i] += 1
        else:
            neg[i] += 1


def pxap_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> dict[str, np.ndarray]:
    """PxAP and the precision-recall curve from per-bin pixel counts (the reference's formula).

    Args:
        pos_hist: counts [T + 2] of positive pixels per bin, ascending bins.
        neg_hist: counts [T + 2] of negative pixels per bin.

    Returns:
        ``pxap`` (percent), ``precision`` and ``recall`` float64 [T + 2], index 0 = ">= 2",
        last = ">= 0". Precision is 1.0 where no pixel is predicted positive (undefined there;
        those points carry no weight in PxAP).
    """
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    tp = pos[::-1].cumsum()
    fn = pos.sum() - tp
    fp = neg[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise ValueError("PxAP needs at least one positive ground-truth pixel")
    predicted = tp + fp
    precision = tp / np.where(predicted == 0, 1, predicted)
    precision[predicted == 0] = 1.0
    recall = tp / (tp + fn)
    nonzero = predicted != 0
    pxap = (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100
    return {"pxap": pxap, "precision": precision, "recall": recall}


def _flat_scores(scoremaps: torch.Tensor) -> np.ndarray:
    """Flat contiguous numpy array [P] of the scores: float32/64 as they are, others float64.

    Widening (e.g. float16) is exact and is what np.histogram's comparisons do anyway.
    """
    array = scoremaps.detach().cpu()
    if array.dtype not in (torch.float32, torch.float64):
        array = array.to(torch.float64)
    return np.ascontiguousarray(array.numpy()).reshape(-1)


def _flat_flags(tensor: torch.Tensor) -> np.ndarray:
    """uint8 array [P], nonzero where the tensor is (one kernel for every mask dtype)."""
    array = np.ascontiguousarray(tensor.detach().cpu().numpy()).reshape(-1)
    return array.view(np.uint8) if array.dtype == np.bool_ else (array != 0).view(np.uint8)


class PxAP(Metric):
    """Pixel average precision over one global pool of pixels (Choe et al., CVPR 2020).

    State: two [T + 2] histograms (bin edges ``[tau_0, ..., tau_{T-1}, 1, 2, 3]``).

    Args:
        cam_curve_interval: threshold grid step d.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, cam_curve_interval: float = CAM_CURVE_INTERVAL, **kwargs) -> None:
        super().__init__(**kwargs)
        taus = cam_thresholds(cam_curve_interval)
        self._edges = np.append(taus, [1.0, 2.0, 3.0])
        n_bins = len(taus) + 2
        self.add_state("pos_hist", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("neg_hist", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, scoremaps: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> None:
        """Accumulate a batch.

        Args:
            scoremaps: float tensor [N, H, W] in [0, 1].
            masks: tensor [N, H, W]; nonzero = foreground (union of instance masks).
            ignore: optional tensor [N, H, W]; nonzero pixels outside the foreground are left out
                of the negatives (foreground pixels stay positive, as in the reference).
        """
        check_scoremaps(scoremaps)
        if masks.shape != scoremaps.shape:
            raise ValueError(f"masks {tuple(masks.shape)} != scoremaps {tuple(scoremaps.shape)}")
        if ignore is not None and ignore.shape != scoremaps.shape:
            raise ValueError(f"ignore {tuple(ignore.shape)} != {tuple(scoremaps.shape)}")
        scores = _flat_scores(scoremaps)
        pos = np.zeros(len(self._edges) - 1, dtype=np.int64)
        neg = np.zeros_like(pos)
        # Summing over the batch equals the sum of the reference's per-image histograms.
        accumulate_histograms(
            scores,
            _flat_flags(masks),
            np.zeros(0, np.uint8) if ignore is None else _flat_flags(ignore),
            self._edges,
            pos,
            neg,
        )
        self.pos_hist += torch.from_numpy(pos).to(self.pos_hist)
        self.neg_hist += torch.from_numpy(neg).to(self.neg_hist)

    def compute(self) -> dict[str, torch.Tensor]:
        """Return ``pxap`` (percent), ``precision`` and ``recall`` (float64 [T + 2])."""
        out = pxap_from_histograms(self.pos_hist.cpu().numpy(), self.neg_hist.cpu().numpy())
        return {key: torch.as_tensor(value, dtype=torch.float64) for key, value in out.items()}

"""MaxBoxAcc (v1) and MaxBoxAccV2 as a DDP-synchronised torchmetrics Metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from camlab.metrics.contours import max_iou_curve
from camlab.metrics.thresholds import cam_thresholds
from camlab.metrics.validation import check_boxes, check_scoremaps
from camlab.protocol import CAM_CURVE_INTERVAL


class MaxBoxAcc(Metric):
    """Box accuracy at the best data-set-wide CAM threshold (Choe et al., CVPR 2020).

    ``MaxBoxAcc()`` is MaxBoxAccV2 (all contours, IoU 30/50/70);
    ``MaxBoxAcc(multi_contour=False, iou_thresholds=(50,))`` is the original MaxBoxAcc.
    State is one [D, T] count matrix plus an image count, whatever the number of images.

    Args:
        cam_curve_interval: threshold grid step d; taus are ``np.arange(0, 1, d)``.
        iou_thresholds: IoU thresholds delta in percent.
        multi_contour: keep every contour (V2) instead of the largest one (v1).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        cam_curve_interval: float = CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        multi_contour: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(iou_thresholds) == 0:
            raise ValueError("iou_thresholds must not be empty")
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        self.multi_contour = multi_contour
        self._taus = cam_thresholds(cam_curve_interval)
        self._deltas = np.array([t / 100 for t in self.iou_thresholds])
        n_iou, n_tau = len(self.iou_thresholds), len(self._taus)
        self.add_state(
            "num_correct", torch.zeros(n_iou, n_tau, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("num_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps: torch.Tensor, gt_boxes: Sequence[torch.Tensor]) -> None:
        """Accumulate a batch.

        Args:
            scoremaps: float tensor [N, H, W] in [0, 1] (float64 reproduces the reference's
                quantisation bit for bit; see ``cams_to_scoremaps``).
            gt_boxes: N integer tensors [K_i, 4] of (x0, y0, x1, y1), inclusive, in the score
                map's pixel frame.
        """
        hits = self.hits(scoremaps, gt_boxes)
        correct = hits.sum(axis=0, dtype=np.int64)
        self.num_correct += torch.from_numpy(correct).to(self.num_correct.device)
        self.num_images += len(hits)

    def hits(self, scoremaps: torch.Tensor, gt_boxes: Sequence[torch.Tensor]) -> np.ndarray:
        """bool ``[N, D, T]``: image n's best box IoU at threshold t reaches delta d."""
        check_scoremaps(scoremaps)
        check_boxes(gt_boxes, len(scoremaps))
        maps = scoremaps.detach().cpu().numpy()
        out = np.zeros((len(maps), len(self._deltas), len(self._taus)), dtype=bool)
        for n, (scoremap, boxes) in enumerate(zip(maps, gt_boxes, strict=True)):
            gt = torch.as_tensor(boxes).detach().cpu().numpy().astype(np.int64)
            scores = max_iou_curve(scoremap, gt, self._taus, self.multi_contour)
            out[n] = scores[None, :] >= self._deltas[:, None]
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the metric dictionary.

        Returns:
            ``max_box_acc`` (mean over deltas, percent), ``max_box_acc@{delta}`` and
            ``best_threshold@{delta}`` (first tau reaching the maximum) for every delta,
            ``curve`` float64 [D, T] (accuracy in percent at each tau) and ``thresholds`` [T].
        """
        if int(self.num_images) == 0:
            raise ValueError("MaxBoxAcc.compute() called before any update()")
        # Same float64 expression as the reference: count * 100. / float(cnt).
        curve = self.num_correct.cpu().numpy().astype(np.float64) * 100.0 / float(self.num_images)
        maxima = curve.max(axis=1)
        best = curve.argmax(axis=1)
        out: dict[str, torch.Tensor] = {
            "max_box_acc": torch.tensor(np.average(maxima), dtype=torch.float64)
        }
        for i, delta in enumerate(self.iou_thresholds):
            out[f"max_box_acc@{delta}"] = torch.tensor(maxima[i], dtype=torch.float64)
            out[f"best_threshold@{delta}"] = torch.tensor(self._taus[best[i]], dtype=torch.float64)
        out["curve"] = torch.from_numpy(curve)
        out["thresholds"] = torch.from_numpy(self._taus.copy())
        return out

"""Fixed-threshold localisation accuracy of the CAM paper (Zhou et al., CVPR 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from camlab.metrics.contours import best_iou
from camlab.metrics.validation import check_boxes, check_scoremaps


class LocalizationAccuracy(Metric):
    """Top-k Loc, GT-known Loc and top-k classification at one fixed CAM threshold.

    The box is the reference's v1 box (largest-area contour of ``s8 > int(tau * max(s8))``).
    A top-k guess localises correctly only when it is the GT class, whose CAM is the GT-class
    map, so Top-k Loc = (label in the top k) AND (GT-known box IoU >= iou_threshold); the
    top-k classes' own maps are never needed.

    Args:
        cam_threshold: fixed tau (0.2 = 20% of the map's maximum, as in the paper).
        iou_threshold: IoU needed for a correct box (fraction, 0.5).
        topk: the k values to report.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        cam_threshold: float = 0.2,
        iou_threshold: float = 0.5,
        topk: Sequence[int] = (1, 5),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cam_threshold = float(cam_threshold)
        self.iou_threshold = float(iou_threshold)
        self.topk = tuple(int(k) for k in topk)
        n = len(self.topk)
        self.add_state("cls_correct", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("loc_correct", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("gt_known", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        scoremaps: torch.Tensor,
        gt_boxes: Sequence[torch.Tensor],
    ) -> None:
        """Accumulate a batch.

        Args:
            logits: tensor [N, C] of class scores.
            labels: int tensor [N] of GT classes.
            scoremaps: float tensor [N, H, W] in [0, 1]: each image's GT-class score map.
            gt_boxes: N integer tensors [K_i, 4] (x0, y0, x1, y1), inclusive, map frame.
        """
        check_scoremaps(scoremaps)
        check_boxes(gt_boxes, len(scoremaps))
        if logits.ndim != 2 or len(logits) != len(scoremaps) or labels.shape != (len(logits),):
            raise ValueError(
                f"need logits [N, C] and labels [N] with N={len(scoremaps)}, got "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        if max(self.topk) > logits.shape[1]:
            raise ValueError(f"topk {self.topk} exceeds the {logits.shape[1]} classes")
        maps = scoremaps.detach().cpu().numpy()
        located = torch.tensor(
            [
                best_iou(m, torch.as_tensor(b).cpu().numpy(), self.cam_threshold, False)
                >= self.iou_threshold
                for m, b in zip(maps, gt_boxes, strict=True)
            ],
            dtype=torch.bool,
        )
        ranked = logits.detach().cpu().topk(max(self.topk), dim=1).indices
        hits = ranked == labels.detach().cpu()[:, None]
        for i, k in enumerate(self.topk):
            in_topk = hits[:, :k].any(dim=1)
            self.cls_correct[i] += int(in_topk.sum())
            self.loc_correct[i] += int((in_topk & located).sum())
        self.gt_known += int(located.sum())
        self.num_images += len(maps)

    def compute(self) -> dict[str, torch.Tensor]:
        """Return ``top{k}_loc``, ``top{k}_cls`` for every k and ``gt_known_loc`` (percent)."""
        if int(self.num_images) == 0:
            raise ValueError("LocalizationAccuracy.compute() called before any update()")
        n = float(self.num_images)

        def percent(count: torch.Tensor) -> torch.Tensor:
            return torch.tensor(float(count) * 100.0 / n, dtype=torch.float64)

        out: dict[str, torch.Tensor] = {}
        for i, k in enumerate(self.topk):
            out[f"top{k}_loc"] = percent(self.loc_correct[i])
            out[f"top{k}_cls"] = percent(self.cls_correct[i])
        out["gt_known_loc"] = percent(self.gt_known)
        return out

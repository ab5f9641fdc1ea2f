"""Input checks shared by the metrics."""

from __future__ import annotations

import torch


def check_scoremaps(scoremaps: torch.Tensor) -> None:
    """Raise ValueError unless ``scoremaps`` is a float tensor [N, H, W] with values in [0, 1].

    Args:
        scoremaps: tensor [N, H, W].
    """
    if not isinstance(scoremaps, torch.Tensor) or not scoremaps.is_floating_point():
        raise ValueError(f"scoremaps must be a float tensor, got {type(scoremaps).__name__}")
    if scoremaps.ndim != 3:
        raise ValueError(f"scoremaps must have shape [N, H, W], got {tuple(scoremaps.shape)}")
    if scoremaps.numel() == 0:
        return
    lo, hi = scoremaps.min().item(), scoremaps.max().item()
    has_nan = bool(torch.isnan(scoremaps).any())
    if has_nan or lo < 0.0 or hi > 1.0:
        raise ValueError(
            "scoremaps must lie in [0, 1] without NaN "
            f"(min={lo}, max={hi}, contains NaN={has_nan}); normalise CAMs with "
            "camlab.metrics.cams_to_scoremaps first"
        )


def check_boxes(gt_boxes: list, n: int) -> None:
    """Raise ValueError unless ``gt_boxes`` holds ``n`` integer tensors [K_i, 4], K_i >= 1."""
    if len(gt_boxes) != n:
        raise ValueError(f"got {len(gt_boxes)} box tensors for {n} score maps")
    for i, b in enumerate(gt_boxes):
        b = torch.as_tensor(b)
        if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
            raise ValueError(
                f"gt_boxes[{i}] must have shape [K, 4] with K >= 1, got {tuple(b.shape)}"
            )
        if b.is_floating_point():
            raise ValueError(f"gt_boxes[{i}] must be integer pixel coordinates, got {b.dtype}")
        if (b < 0).any() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
            raise ValueError(
                f"gt_boxes[{i}] must be non-negative (x0, y0, x1, y1) with x0<=x1, y0<=y1"
            )

"""Resizing and per-map normalization of CAMs."""

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_maps(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear upsampling of ``[..., h, w]`` maps to ``size`` on their device."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def minmax_normalize(maps: Tensor) -> Tensor:
    """Per-map min-max scaling of ``[..., h, w]`` to [0, 1]; a constant map becomes zeros."""
    lo = maps.amin((-2, -1), keepdim=True)
    span = maps.amax((-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1), 0)

"""Similarity of two saliency maps, as the sanity checks compare them (Adebayo et al., NeurIPS
2018): Spearman rank correlation (of the maps and of their absolute values), SSIM and the Pearson
correlation of HOG features. Batched torch in float64, one number per pair of maps.

- ``rank_correlation``: scipy.stats.spearmanr's (ties get their average rank).
- ``ssim``: skimage.metrics.structural_similarity's defaults (a 7 x 7 uniform window, sample
  covariance, K1 = 0.01, K2 = 0.03, the mean over the windows inside the map), ``data_range`` 1
  for min-max normalised maps.
- ``hog_features``: skimage.feature.hog's defaults (9 orientations, 8 x 8 pixel cells, 3 x 3
  cell blocks, L2-Hys); skimage sums the cells in float32, so its values agree to about 1e-6.

Correlations are undefined for a constant input; here two constant inputs count as unchanged
(1) and one constant input as unrelated (0), so a map that a randomised model turns into zeros
has changed and one that stays zeros has not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")


def average_ranks(x: Tensor) -> Tensor:
    """Ranks 1..L along the last axis, tied values sharing their average rank (scipy's rankdata
    ``method="average"``).

    Args:
        x: ``[N, L]``.

    Returns:
        float64 ``[N, L]``.
    """
    n, length = x.shape
    values, order = x.sort(dim=1)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    # Tie groups numbered across the whole batch, so one scatter serves every row.
    group = starts.flatten().cumsum(0) - 1
    position = torch.arange(length, device=x.device, dtype=torch.float64).repeat(n)
    groups = int(group[-1]) + 1 if group.numel() else 0
    first = torch.full((groups,), float(length), dtype=torch.float64, device=x.device)
    last = torch.zeros(groups, dtype=torch.float64, device=x.device)
    first.scatter_reduce_(0, group, position, "amin")
    last.scatter_reduce_(0, group, position, "amax")
    sorted_ranks = ((first + last) / 2 + 1)[group].view(n, length)
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row pair (constant rows: see the module docstring).

    Args:
        a, b: ``[N, L]``.

    Returns:
        float64 ``[N]``.
    """
    a, b = a.double(), b.double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    va, vb = (a * a).sum(1), (b * b).sum(1)
    r = (a * b).sum(1) / (va * vb).sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    both_constant, one_constant = (va == 0) & (vb == 0), (va == 0) ^ (vb == 0)
    r = torch.where(both_constant, torch.ones_like(r), r)
    r = torch.where(one_constant, torch.zeros_like(r), r)
    return r.clamp(-1, 1)  # rounding can step past 1 for identical rows


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each map pair (scipy.stats.spearmanr).

    Args:
        a, b: ``[N, H, W]`` (or ``[N, L]``).

    Returns:
        float64 ``[N]``.
    """
    return pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, win_size: int = 7) -> Tensor:
    """Mean structural similarity of each map pair (skimage's ``structural_similarity``
    defaults; its reflected border is cropped away before the mean, so only windows inside
    the map count).

    Args:
        a, b: ``[N, H, W]``, H and W at least ``win_size``.
        data_range: the maps' value range (1 for maps in [0, 1]).
        win_size: side of the uniform window (odd).

    Returns:
        float64 ``[N]``.
    """
    x, y = a.double()[:, None], b.double()[:, None]
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs maps of at least {win_size} x {win_size} pixels")
    # The five local means in one pooling call: x, y, x^2, y^2, xy.
    stack = torch.cat([x, y, x * x, y * y, x * y], 1)
    ux, uy, uxx, uyy, uxy = F.avg_pool2d(stack, win_size, stride=1).unbind(1)
    cov_norm = win_size**2 / (win_size**2 - 1)  # the sample covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def hog_features(
    maps: Tensor, orientations: int = 9, pixels_per_cell: int = 8, cells_per_block: int = 3
) -> Tensor:
    """Histogram-of-oriented-gradients features of each map (skimage.feature.hog's defaults:
    central differences with zero borders, unsigned orientations in ``orientations`` bins, the
    cell mean of the gradient magnitudes per bin, overlapping blocks normalised by L2-Hys).

    Args:
        maps: ``[N, H, W]``; H and W at least ``pixels_per_cell * cells_per_block``.

    Returns:
        float64 ``[N, F]``, F = blocks_y * blocks_x * cells_per_block**2 * orientations, in
        skimage's order.
    """
    x = maps.double()
    n, height, width = x.shape
    cells_y, cells_x = height // pixels_per_cell, width // pixels_per_cell
    blocks_y, blocks_x = cells_y - cells_per_block + 1, cells_x - cells_per_block + 1
    if blocks_y < 1 or blocks_x < 1:
        side = pixels_per_cell * cells_per_block
        raise ValueError(f"HOG needs maps of at least {side} x {side} pixels")
    g_row, g_col = torch.zeros_like(x), torch.zeros_like(x)
    g_row[:, 1:-1] = x[:, 2:] - x[:, :-2]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    magnitude = torch.hypot(g_col, g_row)
    orientation = torch.rad2deg(torch.atan2(g_row, g_col)) % 180
    # Cells tile the map from its top-left corner; leftover rows / columns are dropped.
    crop = (slice(None), slice(0, cells_y * pixels_per_cell), slice(0, cells_x * pixels_per_cell))
    magnitude, orientation = magnitude[crop], orientation[crop]
    # skimage's bins: [step * i, step * (i + 1)), bounds in float32.
    bounds = torch.arange(orientations + 1, dtype=torch.float64) * (180.0 / orientations)
    bounds = bounds.float().double().to(x.device)[:, None, None]
    binned = (orientation[:, None] >= bounds[:-1]) & (orientation[:, None] < bounds[1:])
    cells = F.avg_pool2d(magnitude[:, None] * binned, pixels_per_cell)  # [N, o, cy, cx]
    cells = cells.permute(0, 2, 3, 1)  # [N, cells_y, cells_x, orientations]
    blocks = cells.unfold(1, cells_per_block, 1).unfold(2, cells_per_block, 1)
    # [N, by, bx, o, cy, cx] -> skimage's [N, by, bx, cy, cx, o]
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).reshape(n, blocks_y, blocks_x, -1)
    eps = 1e-5
    blocks = blocks / (blocks.square().sum(-1, keepdim=True) + eps**2).sqrt()
    blocks = blocks.clamp_max(0.2)
    blocks = blocks / (blocks.square().sum(-1, keepdim=True) + eps**2).sqrt()
    return blocks.reshape(n, -1)


def hog_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of the HOG features of each map pair.

    Args:
        a, b: ``[N, H, W]``.

    Returns:
        float64 ``[N]``.
    """
    return pearson(hog_features(a), hog_features(b))


def minmax_maps(maps: Tensor) -> Tensor:
    """Per-map min-max scaling to [0, 1] in float64; a constant map becomes zeros (as
    ``camlab.protocol.normalize_scoremap``).

    Args:
        maps: ``[N, H, W]``.
    """
    x = maps.double()
    low = x.flatten(1).amin(1)[:, None, None]
    span = x.flatten(1).amax(1)[:, None, None] - low
    return torch.where(span > 0, (x - low) / span.clamp_min(torch.finfo(x.dtype).tiny), 0.0)


def map_similarities(a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """The four sanity-check similarities of each pair of raw (signed) maps.

    Spearman on the maps and on their absolute values; SSIM and HOG on the min-max normalised
    maps (the paper's [0, 1] maps).

    Args:
        a, b: ``[N, H, W]`` raw maps at the images' resolution.

    Returns:
        ``{measure: float64 [N]}`` for each of ``MEASURES``.
    """
    na, nb = minmax_maps(a), minmax_maps(b)
    return {
        "spearman": rank_correlation(a, b),
        "spearman_abs": rank_correlation(a.abs(), b.abs()),
        "ssim": ssim(na, nb),
        "hog": hog_similarity(na, nb),
    }

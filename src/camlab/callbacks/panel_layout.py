"""How a CAM panel is drawn: tiles (image | CAM, boxes, contours), captions and a grid laid out
for TensorBoard's image cards."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from camlab.cam.overlay import colorize, draw_boxes, overlay

STYLES = ("side_by_side", "overlay", "contour")
PADDING = 2  # make_grid's, between tiles and around the grid
SEPARATOR = 2  # black columns between the two halves of a side-by-side tile
# TensorBoard 2.x IMAGES tab: every card is 350 px wide and shows the image at that width
# (scaled), its container scrolls beyond 1024 px of height. A grid laid out for that card is
# shown whole and close to 1:1 (pixelated scaling of a wider grid blurs the digits).
CARD_WIDTH = 350
CARD_MAX_HEIGHT = 1024
CONTOUR_LEVELS = (0.2, 0.4, 0.6, 0.8)
WHITE, RED = (255, 255, 255), (255, 64, 64)


def text_strip(width: int, lines: Sequence[str], color: tuple[int, int, int] = WHITE) -> Tensor:
    """Black uint8 strip ``[3, h, width]`` with ``lines`` of text, scaled down to fit ``width``;
    ``h`` depends only on the number of lines, so captioned tiles of one panel stack."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (_, h), base = cv2.getTextSize("Ag", font, scale, 1)
    step = h + base + 2
    widest = max(cv2.getTextSize(t, font, scale, 1)[0][0] for t in lines)
    scale = max(0.2, min(scale, scale * (width - 4) / max(widest, 1)))
    strip = np.zeros((step * len(lines) + 2, width, 3), np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(strip, text, (2, k * step + h + 2), font, scale, color, 1, cv2.LINE_AA)
    return torch.from_numpy(strip).permute(2, 0, 1)


def caption(tile: Tensor, lines: Sequence[str], color: tuple[int, int, int] = WHITE) -> Tensor:
    """Appends a text strip under a uint8 ``[3, H, W]`` tile (no image pixel is covered)."""
    return torch.cat([tile.cpu(), text_strip(tile.shape[-1], lines, color)], dim=1)


def plan_grid(
    n: int,
    unit_w: int,
    unit_h: int,
    extra_h: int,
    card_width: int | None = CARD_WIDTH,
    ncols: int | None = None,
    max_height: int = CARD_MAX_HEIGHT,
) -> tuple[int, float]:
    """Columns and tile scale of a grid of ``n`` tiles made to fit a TensorBoard card.

    The scale (<= 1, tiles are never enlarged) is the largest at which the grid is at most
    ``card_width`` wide and ``max_height`` tall; among the column counts reaching it, the
    largest one up to ``ceil(sqrt(n))`` (a square-ish grid) is taken.

    Args:
        n: tiles.
        unit_w, unit_h: one tile's image part at scale 1 (pixels).
        extra_h: unscaled pixels per tile row (the caption) plus the header strip.
        card_width: grid width limit; ``None``: no limit (scale 1, square-ish).
        ncols: fixed column count (then only the width limit applies).
        max_height: grid height limit.

    Returns:
        ``(ncols, scale)``.
    """
    square = max(1, math.ceil(math.sqrt(n)))
    if card_width is None:
        return ncols or square, 1.0

    def scale(cols: int, height: bool = True) -> float:
        rows = math.ceil(n / cols)
        s_w = (card_width - PADDING * (cols + 1)) / (cols * unit_w)
        s_h = (max_height - PADDING * (rows + 1) - rows * extra_h) / (rows * unit_h)
        return max(1e-3, min(1.0, s_w, s_h if height else 1.0))

    if ncols is not None:
        return ncols, scale(ncols, height=False)
    scores = {c: round(scale(c), 6) for c in range(1, n + 1)}
    best = max(scores.values())
    ties = [c for c, s in scores.items() if s == best]
    small = [c for c in ties if c <= square]
    return (max(small) if small else min(ties)), best


def tile(
    image: Tensor,
    shown: Tensor,
    gt: Tensor,
    pred: Tensor | None,
    style: str,
    alpha: float,
    colormap: str,
) -> Tensor:
    """One tile's picture ``[3, h, w']`` in ``style``; boxes: pred red, GT green on top."""
    if style == "contour":
        picture = contour_picture(image, shown, colormap)
    else:
        picture = overlay(image[None], shown[None], alpha, colormap)[0].cpu()
    picture = draw_boxes(draw_boxes(picture, None, pred), gt, None)
    if style != "side_by_side":
        return picture
    # The image alone on the left: the digit stays readable under the hot spot.
    gap = torch.zeros(3, image.shape[1], SEPARATOR, dtype=torch.uint8)
    return torch.cat([image, gap, picture], dim=2)


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, C, H, W]`` (uint8 or float) -> ``size``, antialiased; unchanged at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out


def scale_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Pixel boxes ``[K, 4]`` (inclusive ends) at the tiles' display scale."""
    if scale == 1.0:
        return boxes
    return (boxes.double() * scale).floor().long()


def contour_picture(image: Tensor, maps: Tensor, colormap: str) -> Tensor:
    """Iso-lines of a map in [0, 1] ``[h, w]`` at ``CONTOUR_LEVELS``, each in the colour map's
    colour of its level, on a uint8 image ``[3, h, w]``; the image is not dimmed."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    levels = torch.tensor(CONTOUR_LEVELS)[:, None, None]
    colors = colorize(levels, colormap)[:, :, 0, 0].tolist()  # [L, 3] RGB
    values = maps.numpy()
    for level, color in zip(CONTOUR_LEVELS, colors, strict=True):
        mask = (values >= level).astype(np.uint8)
        found, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, found, -1, tuple(int(c) for c in color), 1, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1)

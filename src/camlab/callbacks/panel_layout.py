"""How a CAM panel is drawn: tiles (image | CAM, boxes, contours), captions and grids laid out
for TensorBoard's image cards (several cards when the tiles do not fit one legibly)."""

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
# TensorBoard 2.x IMAGES tab (tf-image-loader in tensorboard/webfiles.zip, index.js): a card is
# 350 px wide and its image `width: 100%` of it, pixelated: shown 1:1 only when 350 px wide.
CARD_WIDTH = 350
# TensorBoard 2.x TIME SERIES, its landing page (image_card_component, same file): cards are
# `min-height: 320px` in a grid of `minmax(335px, 1fr)` columns, and an image card's image is
# `height: 100%` (`max-width: 100%`, `object-fit: contain`, pixelated) of what the title and step
# slider leave: 215 px at any window size (measured in Chromium). "Toggle actual image size"
# widens the card but keeps that height (the image scrolls in it). So a card reads as it opens
# only if its image is about 215 px high (1:1 at exactly 215): more tiles go on more cards.
CARD_HEIGHT = 215
# Tiles are shrunk to no less than this many pixels of image height to fit more of them on a card
# (84 px digits at 56 px keep their strokes and CAM cells legible; captions are never scaled);
# the rest go on more cards. At 56, three side-by-side tiles a row fill the 350 px exactly.
MIN_TILE = 56
# Grid height limit without CARD_HEIGHT (``card_height=None``): the IMAGES tab scrolls beyond it.
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
        extra_h: unscaled pixels per tile row (the caption).
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


def plan_cards(
    n: int,
    unit_w: int,
    unit_h: int,
    extra_h: int,
    header_h: int,
    card_width: int | None = CARD_WIDTH,
    card_height: int | None = CARD_HEIGHT,
    ncols: int | None = None,
) -> tuple[int, int, float]:
    """Tiles per card, columns and tile scale of a panel of ``n`` tiles split into cards.

    Each card is a header strip over a grid of at most ``card_width`` x ``card_height`` pixels
    (:func:`plan_grid`). The most tiles a card can hold with tiles of at least ``MIN_TILE``
    pixels of image height (or their full height, if smaller) go on one card; the panel takes
    as few cards as that allows, filled evenly (the last one possibly with fewer tiles).

    Args:
        n: tiles.
        unit_w, unit_h: one tile's image part at scale 1 (pixels).
        extra_h: unscaled pixels per tile row (the caption).
        header_h: the header strip's height, above each card's grid.
        card_width: grid width limit; ``None``: no limit (one card, scale 1, square-ish).
        card_height: card height limit, header included; ``None``: one card of all tiles, at
            most ``CARD_MAX_HEIGHT`` tall.
        ncols: fixed column count (one card, only the width limit applies).

    Returns:
        ``(per_card, ncols, scale)``.
    """
    if card_width is None or card_height is None or ncols is not None:
        max_height = CARD_MAX_HEIGHT - header_h
        return (n, *plan_grid(n, unit_w, unit_h, extra_h, card_width, ncols, max_height))
    legible = min(unit_h, MIN_TILE)
    for per_card in range(n, 0, -1):
        cols, scale = plan_grid(per_card, unit_w, unit_h, extra_h, card_width, None,
                                card_height - header_h)  # fmt: skip
        if int(unit_h * scale) >= legible or per_card == 1:
            break
    # As many cards, evenly filled (16 tiles for 10 a card: 8 + 8, not 10 + 6).
    even = math.ceil(n / math.ceil(n / per_card))
    if even < per_card:
        cols, scale = plan_grid(even, unit_w, unit_h, extra_h, card_width, None,
                                card_height - header_h)  # fmt: skip
    return even, cols, scale


def card_tags(prefix: str, n: int, per_card: int) -> list[str]:
    """Tags of a panel's cards: ``prefix`` for one card, else ``prefix/<first>-<last>`` (tile
    numbers from 1, zero-padded so that TensorBoard's alphabetical order is the tile order)."""
    if per_card >= n:
        return [prefix]
    width = len(str(n))
    return [
        f"{prefix}/{start + 1:0{width}d}-{min(start + per_card, n):0{width}d}"
        for start in range(0, n, per_card)
    ]


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

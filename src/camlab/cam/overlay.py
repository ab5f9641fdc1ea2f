"""Rendering CAMs: de-normalized image + colour-mapped CAM + boxes + labels -> uint8 tiles."""

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, make_grid

from camlab.cam.postprocess import minmax_normalize, resize_maps
from camlab.errors import CamlabError
from camlab.imagenet import IMAGENET_MEAN, IMAGENET_STD

GT_COLOR = (0, 255, 0)
PRED_COLOR = (255, 0, 0)

COLORMAPS = {
    name[len("COLORMAP_") :].lower(): getattr(cv2, name)
    for name in dir(cv2)
    if name.startswith("COLORMAP_")
}


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Undoes ``(x - mean) / std``: ``[B, C, H, W]`` (C = 1 or 3) -> uint8 RGB ``[B, 3, H, W]``."""
    c = images.shape[1]
    if c not in (1, 3):
        raise CamlabError(f"Images must have 1 or 3 channels to render; got {c}.")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, c) or std_t.shape[1] not in (1, c):
        raise CamlabError(f"mean/std have {mean_t.shape[1]} values for {c}-channel images.")
    pixels = (images.float() * std_t + mean_t).clamp(0, 1)
    return (pixels * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)


def colorize(maps: Tensor, colormap: str = "jet") -> Tensor:
    """Maps in [0, 1] ``[B, H, W]`` -> uint8 RGB ``[B, 3, H, W]`` with an OpenCV colour map.

    Raises:
        CamlabError: unknown colour map name, listing the valid ones.
    """
    code = COLORMAPS.get(colormap.lower())
    if code is None:
        raise CamlabError(
            f"Unknown colour map '{colormap}'. Valid choices: {', '.join(sorted(COLORMAPS))}."
        )
    gray = (maps.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    bgr = np.stack([cv2.applyColorMap(m, code) for m in gray])  # [B, H, W, 3]
    return torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).to(maps.device)


def overlay(images: Tensor, maps: Tensor, alpha: float = 0.5, colormap: str = "jet") -> Tensor:
    """Alpha-blends colour-mapped CAMs onto uint8 images.

    Args:
        images: uint8 RGB ``[B, 3, H, W]`` (see ``denormalize``).
        maps: CAMs ``[B, h, w]``, any range: resized to ``H, W`` and min-max scaled per map.
        alpha: weight of the CAM colour (0 = image only).
        colormap: OpenCV colour map name (``COLORMAPS``).

    Returns:
        uint8 ``[B, 3, H, W]``.
    """
    size = tuple(images.shape[-2:])
    maps = minmax_normalize(resize_maps(maps.to(images.device), size))
    heat = colorize(maps, colormap).float()
    return (images.float() * (1 - alpha) + heat * alpha).round().clamp(0, 255).to(torch.uint8)


def draw_boxes(
    image: Tensor,
    gt_boxes: Tensor | None = None,
    pred_boxes: Tensor | None = None,
    width: int = 2,
) -> Tensor:
    """Ground-truth boxes in green, predicted in red, on a uint8 ``[3, H, W]`` image.

    Boxes are ``[N, 4]`` pixel ``(x1, y1, x2, y2)``.
    """
    for boxes, color in ((gt_boxes, GT_COLOR), (pred_boxes, PRED_COLOR)):
        if boxes is not None and len(boxes):
            boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            colors = [color] * len(boxes)
            image = draw_bounding_boxes(image.cpu(), boxes, colors=colors, width=width)
    return image


def put_label(image: Tensor, text: str) -> Tensor:
    """Writes ``text`` in white on a dark strip at the top-left of a uint8 ``[3, H, W]`` image."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
    scale = max(0.3, image.shape[-1] / 500)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (w + 4, h + base + 4), (0, 0, 0), thickness=-1)
    cv2.putText(
        canvas, text, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return torch.from_numpy(canvas).permute(2, 0, 1)


def render_cams(
    images: Tensor,
    maps: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    gt_boxes: Sequence[Tensor | None] | None = None,
    pred_boxes: Sequence[Tensor | None] | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Tensor:
    """Full tiles: normalized model inputs + CAMs (+ boxes, + labels) -> uint8 ``[B, 3, H, W]``.

    Args:
        images: normalized model input ``[B, C, H, W]`` (C = 1 or 3).
        maps: CAMs ``[B, h, w]``.
        mean: per-channel mean used to normalize the images.
        std: per-channel std used to normalize the images.
        gt_boxes: per image, ``[N, 4]`` pixel boxes or ``None``; drawn green.
        pred_boxes: per image, ``[N, 4]`` pixel boxes or ``None``; drawn red.
        labels: per image, a text such as ``"dog 0.87"``.
        alpha: CAM weight in the blend.
        colormap: OpenCV colour map name.
    """
    tiles = overlay(denormalize(images, mean, std), maps, alpha, colormap).cpu()
    out = []
    for i, tile in enumerate(tiles):
        gt = gt_boxes[i] if gt_boxes is not None else None
        pred = pred_boxes[i] if pred_boxes is not None else None
        tile = draw_boxes(tile, gt, pred)
        if labels is not None and labels[i]:
            tile = put_label(tile, labels[i])
        out.append(tile)
    return torch.stack(out)


def grid(tiles: Tensor, nrow: int = 8, padding: int = 2) -> Tensor:
    """Tiles uint8 ``[B, 3, H, W]`` -> one uint8 ``[3, H', W']`` grid (``make_grid``)."""
    return make_grid(tiles, nrow=nrow, padding=padding)

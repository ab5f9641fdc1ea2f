"""The WSOL evaluation protocol (Choe et al., CVPR 2020) in one place, below every other layer:
what a batch holds, and how CAMs, boxes and masks reach the S x S frame the metrics score in.

Batches (every camlab data module): ``image`` float ``[B, C, H, W]`` (normalised), ``label``
int64 ``[B]``, ``index`` int64 ``[B]``, ``box`` int64 ``[B, K, 4]`` ground-truth boxes
``(x0, y0, x1, y1)`` in inclusive pixels of the image's frame, rows of ``-1`` padding images with
fewer than ``K`` boxes (``collate``; ``gt_box_list`` undoes it), and, with pixel masks, ``mask``
uint8 ``[B, H, W]`` (1 object, 0 background, 255 ignored). A data module says which of its splits
carry boxes and masks (``has_boxes(split)``, ``has_masks(split)``).

Score maps: the reference casts CAMs to float64, upsamples each with ``cv2.resize(...,
INTER_CUBIC)`` and then min-max normalises. ``torch.nn.functional.interpolate(mode="bicubic")``
uses the same kernel but differs by a few ulps on about a third of the pixels, which can move a
pixel across a uint8 quantisation step, so OpenCV is called per map here. Boxes are rescaled with
``int(x * S / W)``, masks resized with nearest neighbour.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalise one map to [0, 1]; a constant map or one with NaN becomes zeros.

    Args:
        cam: float array [H, W].

    Returns:
        float array [H, W] of the same dtype.
    """
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    cam /= cam.max()
    return cam


def cams_to_scoremaps(cams: torch.Tensor, size: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """Bicubic upsampling (OpenCV, float64) followed by min-max normalisation, per map.

    Args:
        cams: tensor [N, h, w] of raw CAMs.
        size: output (height, width).

    Returns:
        float64 tensor [N, height, width] in [0, 1], on the CPU.
    """
    if cams.ndim != 3:
        raise ValueError(f"cams must have shape [N, h, w], got {tuple(cams.shape)}")
    height, width = size
    maps = cams.detach().cpu().numpy().astype(np.float64)
    out = np.empty((len(maps), height, width), dtype=np.float64)
    for i, cam in enumerate(maps):
        out[i] = normalize_scoremap(cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC))
    return torch.from_numpy(out)


def rescale_boxes(
    boxes: torch.Tensor, orig_size: tuple[int, int], size: int | tuple[int, int] = 224
) -> torch.Tensor:
    """Map (x0, y0, x1, y1) boxes from original pixels into the resized frame.

    Args:
        boxes: tensor [K, 4] in original pixels (inclusive ends).
        orig_size: original image (width, height).
        size: resized side S, or (width, height).

    Returns:
        int64 tensor [K, 4]: ``int(x * S / W)``, ``int(y * S / H)`` (truncation, as the reference).
    """
    new_w, new_h = (size, size) if isinstance(size, int) else size
    width, height = orig_size
    b = torch.as_tensor(boxes).detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
    scale_num = np.array([new_w, new_h, new_w, new_h], dtype=np.float64)
    scale_den = np.array([width, height, width, height], dtype=np.float64)
    # Left-to-right (x * S) / W in float64, then truncation: the reference's exact expression.
    return torch.from_numpy((b * scale_num / scale_den).astype(np.int64))


def resize_masks(masks: torch.Tensor, size: tuple[int, int] = (224, 224)) -> torch.Tensor:
    """Nearest-neighbour resize of masks (OpenCV, like the reference), foreground = value > 0.5.

    Args:
        masks: tensor [N, h, w] (bool, 0/1 or 0..255).
        size: output (height, width).

    Returns:
        bool tensor [N, height, width].
    """
    height, width = size
    arr = masks.detach().cpu().numpy().astype(np.float32)
    out = (
        np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in arr])
        if len(arr)
        else np.zeros((0, height, width), dtype=np.float32)
    )
    return torch.from_numpy(out > 0.5)


# The protocol's settings: MaxBoxAccV2 averages IoU 30/50/70; Top-1 / GT-known Loc threshold the
# CAM at 20% of its maximum (the CAM paper). The threshold grid step is the reference evaluator's
# (evaluation.py: 0.01); its training loop validates at 0.001 (config.py), as the recipes do.
IOU_THRESHOLDS = (30, 50, 70)
CAM_THRESHOLD = 0.2
CAM_CURVE_INTERVAL = 0.01


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stacks items; boxes ``[K_i, 4]`` become ``[B, max(1, max K_i), 4]``, -1 rows padding."""
    width = max([1] + [len(item["box"]) for item in items])
    boxes = torch.full((len(items), width, 4), -1, dtype=torch.int64)
    for b, item in enumerate(items):
        boxes[b, : len(item["box"])] = item["box"]
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0] if key != "box"}
    batch["box"] = boxes
    return batch


def gt_box_list(boxes: torch.Tensor) -> list[torch.Tensor]:
    """Batch boxes ``[B, K, 4]`` with ``-1`` padding rows -> B CPU int64 tensors ``[K_i, 4]``."""
    boxes = boxes.detach().cpu().long()
    return [b[b[:, 0] >= 0] for b in boxes]

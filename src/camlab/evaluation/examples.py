"""Best- and worst-localised images of a split, rendered as one overlay grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camlab.cam import compute_cam
from camlab.cam.overlay import grid, render_cams
from camlab.data.base import LocalizationDataModule
from camlab.metrics import box_iou, boxes_at_threshold, cams_to_scoremaps
from camlab.protocol import gt_box_list


def pick_examples(rows: list[dict[str, Any]], method: str, n: int) -> list[int]:
    """Split indices of the ``n`` best then the ``n`` worst images by best IoU (distinct)."""
    scored = sorted((r for r in rows if method in r), key=lambda r: -r[method]["best_iou"])
    best = [r["index"] for r in scored[:n]]
    worst = [r["index"] for r in scored[::-1][:n] if r["index"] not in best]
    return best + worst


@torch.no_grad()
def example_grid(
    classifier: nn.Module,
    datamodule: LocalizationDataModule,
    split: str,
    method: str,
    indices: Sequence[int],
    threshold: float,
    nrow: int,
    raw_maps: Callable[[str, Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """Overlay tiles of ``indices``: GT boxes green, the best-matching box of the CAM
    thresholded at ``threshold`` red, ``true -> predicted (probability) IoU`` on each tile.

    ``raw_maps(method, images, labels) -> [B, h, w]`` replaces ``compute_cam`` (baselines:
    ``CamEvaluation.raw_maps``).

    Returns:
        uint8 ``[3, H', W']`` grid.
    """
    dataset = datamodule.dataset(split)
    batch = datamodule.test_dataloader().collate_fn([dataset[i] for i in indices])
    device = next(classifier.parameters()).device
    images, labels = batch["image"].to(device), batch["label"].to(device)
    probs = classifier(images).float().softmax(1).cpu()
    if raw_maps is None:
        cams = compute_cam(classifier, images, method, targets=labels)
    else:
        cams = raw_maps(method, images, labels)
    maps = cams_to_scoremaps(cams, tuple(images.shape[-2:]))
    gt = gt_box_list(batch["box"])
    pred, texts = [], []
    names = datamodule.class_names
    for scoremap, boxes, label, p in zip(maps.numpy(), gt, labels.tolist(), probs, strict=True):
        found = boxes_at_threshold(scoremap, threshold, multi_contour=True)
        ious = box_iou(found, boxes.numpy()).max(axis=1)
        pred.append(torch.from_numpy(found[[int(np.argmax(ious))]]))
        guess = int(p.argmax())
        texts.append(f"{names[label]}>{names[guess]} {float(p[guess]):.2f} IoU {ious.max():.2f}")
    tiles = render_cams(
        images.cpu(), maps.float(), datamodule.mean, datamodule.std, gt, pred, texts
    )
    return grid(tiles, nrow=nrow)

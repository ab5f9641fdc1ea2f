"""Which validation images a CAM panel shows: a fixed, class-balanced selection."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from camlab.protocol import gt_box_list

MAX_SCAN = 5000  # most validation items *read* to find images of every class (no label array)


def select_indices(
    labels_of: Callable[[int], int],
    length: int,
    num_images: int,
    num_classes: int,
    max_scan: int | None = MAX_SCAN,
) -> list[int]:
    """Deterministic, class-stratified pick of ``num_images`` indices.

    Every class present is picked once before any is picked twice (tiles ordered class by
    class: the first image of each class, then the second ones, ...). With more classes than
    images, a fixed spread of classes (evenly spaced in sorted label order) gets one image
    each. Within a class, the lowest indices win. Classes too rare to fill the quota are topped
    up with the first unused indices.

    Args:
        labels_of: ``i -> int`` label of item ``i``.
        length: items in the split.
        num_images: how many to pick.
        num_classes: classes (stops the scan early once each has its quota).
        max_scan: most items scanned (``None``: all; reading labels may load images).

    Returns:
        ``min(num_images, length)`` distinct indices.
    """
    n = min(num_images, length)
    quota = max(1, math.ceil(n / max(1, num_classes)))
    per_class: dict[int, list[int]] = {}
    full = 0
    for i in range(length if max_scan is None else min(length, max_scan)):
        chosen = per_class.setdefault(int(labels_of(i)), [])
        if len(chosen) < quota:
            chosen.append(i)
            full += len(chosen) == quota
            if full >= num_classes:
                break
    classes = sorted(per_class)
    if len(classes) > n:
        classes = [classes[j * len(classes) // n] for j in range(n)]
    order = [
        per_class[label][rank]
        for rank in range(quota)
        for label in classes
        if rank < len(per_class[label])
    ][:n]
    used = set(order)
    order += [i for i in range(length) if i not in used][: n - len(order)]
    return order


def label_lookup(dataset) -> tuple[Callable[[int], int], bool]:
    """``(i -> label, cheap)``: a label array when the data set has one, else reading items."""
    for attr in ("labels", "targets"):
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return (lambda i, v=values: int(v[i])), True
    return (lambda i: int(torch.as_tensor(dataset[i]["label"]))), False


def stack_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Data set items -> ``image`` [N, C, H, W], ``label`` [N], ``boxes`` (N tensors [K_i, 4])."""
    width = max(len(torch.as_tensor(it["box"]).reshape(-1, 4)) for it in items)
    boxes = torch.full((len(items), width, 4), -1, dtype=torch.long)
    for k, it in enumerate(items):
        b = torch.as_tensor(it["box"]).reshape(-1, 4)
        boxes[k, : len(b)] = b
    return {
        "image": torch.stack([torch.as_tensor(it["image"]) for it in items]).float(),
        "label": torch.tensor([int(torch.as_tensor(it["label"])) for it in items]),
        "boxes": gt_box_list(boxes),
    }

"""The evaluation's numbers and figures in TensorBoard, beside the training runs: an event file
in the evaluation's own folder (``<eval run>/tensorboard``), so ``tensorboard --logdir outputs/``
shows training and evaluation together."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def flat_scalars(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{method: {name: number or nested dict}}`` -> ``{"<prefix>/<method>/<name>": x}``;
    lists and non-finite numbers are left out (TensorBoard plots finite scalars)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out.update(flat_scalars(value, tag))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out[tag] = float(value)
    return out


def log_evaluation(out_dir: Path, split: str, summary: Mapping[str, Any]) -> Path:
    """Writes ``summary``'s classification and per-method metrics as scalars and every PNG the
    evaluation wrote into ``out_dir`` (threshold curves, examples, PR curves, sanity plots) as
    images, under the tag prefix ``eval_<split>``; returns the event folder."""
    import cv2  # torchvision's image decoding is deprecated (0.29)
    from torch.utils.tensorboard import SummaryWriter

    logdir = out_dir / "tensorboard"
    prefix = f"eval_{split}"
    with SummaryWriter(str(logdir)) as writer:
        scalars = flat_scalars({"classification": summary["classification"]}, prefix)
        scalars.update(flat_scalars(summary["methods"], prefix))
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=0)
        for png in sorted(out_dir.glob("*.png")):
            image = cv2.imread(str(png), cv2.IMREAD_COLOR)  # BGR [H, W, 3] uint8
            if image is not None:
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                writer.add_image(f"{prefix}/{png.stem}", rgb, global_step=0, dataformats="HWC")
    return logdir

"""A generated data set in the CUB layout of wsolevaluation, and a random-weight checkpoint.

``write_dataset(root, n)`` writes ``n`` JPEGs of CUB's typical sizes (a textured ellipse on a
smooth background, one box each) to ``root/dataset/CUB`` and the reference's metadata files to
``root/metadata/CUB/{train,val,test}`` (every split lists the same images), so both
``data=cub paths.data_dir=root data.num_classes=200`` and the reference's own loaders read it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _image(rng: np.random.Generator, width: int, height: int, label: int):
    """uint8 ``[H, W, 3]`` RGB image and its object box (x0, y0, x1, y1), inclusive."""
    low = rng.uniform(40, 200, size=(height // 32 + 2, width // 32 + 2, 3)).astype(np.float32)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 12, size=image.shape).astype(np.float32)
    ax, ay = rng.uniform(0.15, 0.35) * width, rng.uniform(0.15, 0.35) * height
    cx, cy = rng.uniform(ax, width - ax), rng.uniform(ay, height - ay)
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(ax), int(ay)), rng.uniform(0, 180), 0, 360, 1, -1)
    color = np.array([(label * 37) % 256, (label * 91) % 256, (label * 151) % 256], np.float32)
    stripes = 30 * np.sin(np.arange(width, dtype=np.float32) / rng.uniform(2, 6))[None, :, None]
    image = np.where(mask[..., None] > 0, color + stripes, image)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return np.clip(image, 0, 255).astype(np.uint8), box


def write_dataset(root: Path, n: int, num_classes: int = 200, seed: int = 0) -> Path:
    """Writes the images and metadata (skipped when ``root`` already holds ``n`` images)."""
    root = Path(root)
    meta = root / "metadata" / "CUB"
    ids_file = meta / "test" / "image_ids.txt"
    if ids_file.is_file() and len(ids_file.read_text().split()) == n:
        return root
    rng = np.random.default_rng(seed)
    ids, labels, sizes, boxes = [], [], [], []
    for i in range(n):
        label = i % num_classes
        width, height = int(rng.integers(300, 501)), int(rng.integers(250, 501))
        image, box = _image(rng, width, height, label)
        rel = f"{label:03d}.class_{label}/image_{i:05d}.jpg"
        path = root / "dataset" / "CUB" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        ids.append(rel)
        labels.append(f"{rel},{label}")
        sizes.append(f"{rel},{width},{height}")
        boxes.append(f"{rel},{box[0]},{box[1]},{box[2]},{box[3]}")
    for split in ("train", "val", "test"):  # the same images in every split
        (meta / split).mkdir(parents=True, exist_ok=True)
        files = {"image_ids.txt": ids, "class_labels.txt": labels, "image_sizes.txt": sizes}
        files["localization.txt"] = boxes
        for name, lines in files.items():
            (meta / split / name).write_text("".join(f"{line}\n" for line in lines))
    return root


def write_checkpoint(path: Path, backbone: str, num_classes: int, seed: int = 0) -> Path:
    """A Lightning checkpoint of a random-weight ``GAPClassifier`` (no download)."""
    import pytorch_lightning as pl
    import torch

    from camlab.classifier import GAPClassifier

    torch.manual_seed(seed)
    model = GAPClassifier(backbone=backbone, num_classes=num_classes, image_size=224)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(path))
    return path

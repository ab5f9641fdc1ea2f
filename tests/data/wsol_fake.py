"""Tiny data sets in the exact wsolevaluation layout: colored rectangles on gray PNGs.

``make_box_dataset(root)`` writes ``root/dataset/CUB`` and ``root/metadata/CUB`` (what
``data=cub paths.data_dir=root`` reads); ``make_mask_dataset(root)`` writes the OpenImages
equivalents, with instance and ignore mask PNGs and no image_sizes.txt, like the real one.
"""

from pathlib import Path

import cv2
import numpy as np

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # RGB of classes 0, 1, 2
CLASS_DIRS = ["0.red", "1.green", "2.blue"]

# split -> (file name, label, width, height, boxes (x0, y0, x1, y1) inclusive)
BOX_IMAGES = {
    "train": [
        ("train_0.png", 0, 120, 80, [(10, 10, 59, 39)]),
        ("train_1.png", 0, 90, 100, [(20, 30, 69, 89)]),
        ("train_2.png", 1, 100, 60, [(5, 5, 44, 54)]),
        ("train_3.png", 1, 64, 128, [(10, 60, 50, 120)]),
        ("train_4.png", 2, 80, 80, [(40, 40, 79, 79)]),
        ("train_5.png", 2, 150, 90, [(0, 0, 99, 59)]),
    ],
    "val": [
        ("val_0.png", 0, 300, 200, [(30, 40, 149, 119)]),
        ("val_1.png", 1, 150, 250, [(0, 0, 74, 99), (80, 150, 149, 249)]),
        ("val_2.png", 2, 224, 224, [(50, 60, 150, 170)]),
    ],
    "test": [
        ("test_0.png", 0, 100, 100, [(10, 10, 89, 89)]),
        ("test_1.png", 1, 200, 120, [(100, 20, 199, 119)]),
        ("test_2.png", 2, 60, 90, [(0, 30, 59, 59)]),
    ],
}


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = rgb[..., ::-1] if rgb.ndim == 3 else rgb  # OpenCV writes BGR
    assert cv2.imwrite(str(path), np.ascontiguousarray(array))


def draw(width: int, height: int, boxes, color) -> np.ndarray:
    """uint8 ``[height, width, 3]`` gray image with the boxes filled in ``color``."""
    image = np.full((height, width, 3), 128, np.uint8)
    for x0, y0, x1, y1 in boxes:
        image[y0 : y1 + 1, x0 : x1 + 1] = color
    return image


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def make_box_dataset(root: Path, name: str = "CUB") -> dict[str, Path]:
    """Writes the box data set; returns the metadata folder of each split."""
    dirs = {}
    for split, images in BOX_IMAGES.items():
        meta = root / "metadata" / name / split
        ids, labels, sizes, loc = [], [], [], []
        for file, label, w, h, boxes in images:
            rel = f"{CLASS_DIRS[label]}/{file}"
            write_png(root / "dataset" / name / rel, draw(w, h, boxes, COLORS[label]))
            ids.append(rel)
            labels.append(f"{rel},{label}")
            sizes.append(f"{rel},{w},{h}")
            loc += [f"{rel},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in boxes]
        write_lines(meta / "image_ids.txt", ids)
        write_lines(meta / "class_labels.txt", labels)
        write_lines(meta / "image_sizes.txt", sizes)
        write_lines(meta / "localization.txt", loc)
        dirs[split] = meta
    return dirs


def rect_mask(width: int, height: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0 : y1 + 1, x0 : x1 + 1] = 255
    return mask


def make_mask_dataset(root: Path, name: str = "OpenImages") -> dict[str, Path]:
    """Writes the mask data set (val/test: masks; train: labels only). Val images:

    - ``a``: 112 x 56 (nearest upscale x2, x4), one instance, ignore region overlapping it;
    - ``b``: 448 x 224 (downscale /2, /1), two instances (second line: empty ignore field);
    - ``c``: 224 x 224, one instance, empty ignore field on its only line (nothing ignored).
    """
    data = root / "dataset" / name
    val = {
        "a": (0, 112, 56, [(10, 5, 39, 24)], (30, 0, 59, 55)),
        "b": (1, 448, 224, [(0, 0, 99, 99), (300, 100, 399, 199)], (200, 0, 447, 223)),
        "c": (2, 224, 224, [(50, 50, 99, 99)], None),
    }
    dirs = {}
    for split in ("train", "val", "test"):
        meta = root / "metadata" / name / split
        ids, labels, loc = [], [], []
        for key, (label, w, h, masks, ignore) in val.items():
            rel = f"{split}/{CLASS_DIRS[label]}/{key}"
            write_png(data / f"{rel}.jpg", draw(w, h, masks, COLORS[label]))
            ids.append(f"{rel}.jpg")
            labels.append(f"{rel}.jpg,{label}")
            for k, box in enumerate(masks):
                write_png(data / f"{rel}_m{k}.png", rect_mask(w, h, *box))
                ignore_field = ""
                if k == 0 and ignore is not None:
                    ignore_field = f"{rel}_ignore.png"
                    write_png(data / ignore_field, rect_mask(w, h, *ignore))
                loc.append(f"{rel}.jpg,{rel}_m{k}.png,{ignore_field}")
        write_lines(meta / "image_ids.txt", ids)
        write_lines(meta / "class_labels.txt", labels)
        if split != "train":
            write_lines(meta / "localization.txt", loc)
        dirs[split] = meta
    return dirs

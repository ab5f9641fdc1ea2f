"""Procedural shapes on textured backgrounds, with boxes and pixel masks (fast tests, PxAP)."""

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from camlab.data.base import LocalizationDataModule, check_count

SHAPES = ["circle", "square", "triangle", "cross"]


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[size, size]`` mask of one shape of random size, position and rotation."""
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(0.12, 0.3) * size  # half-extent of the shape
    cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "circle":
        cv2.circle(mask, (round(cx), round(cy)), round(r), 1, thickness=-1)
        return mask
    if kind == "square":
        corners = np.arange(4) * np.pi / 2 + np.pi / 4
        radius = np.full(4, r * np.sqrt(2) * 0.8)
    elif kind == "triangle":
        corners, radius = np.arange(3) * 2 * np.pi / 3, np.full(3, r)
    else:  # a plus-shaped cross of arm width r/2.5
        a, b = r, r / 2.5
        xy = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a)]
        xy += [(-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
        corners = np.array([np.arctan2(y, x) for x, y in xy])
        radius = np.array([np.hypot(x, y) for x, y in xy])
    pts = np.stack(
        [cx + radius * np.cos(corners + angle), cy + radius * np.sin(corners + angle)], 1
    )
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """float ``[size, size, 3]`` in [0, 1]: random stripes plus noise, in random colours."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.1, 0.5)
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))
    c0, c1 = rng.uniform(0, 1, size=(2, 3))
    tex = c0 + (c1 - c0) * stripes[..., None]
    return np.clip(tex + rng.normal(0, 0.05, tex.shape), 0, 1).astype(np.float32)


def make_shape_image(
    label: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns image float ``[size, size, 3]`` in [0, 1], mask uint8 ``[size, size]`` and the
    mask's tight box int64 ``[4]`` (x0, y0, x1, y1, inclusive)."""
    mask = _shape_mask(SHAPES[label], size, rng)
    image = np.where(mask[..., None] > 0, _texture(size, rng), _texture(size, rng))
    ys, xs = np.nonzero(mask)
    return image, mask, np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.int64)


class ShapesDataset(Dataset):
    """``length`` images, labels cycling over the classes; ``seed`` as in ``CanvasDigits``."""

    def __init__(self, length: int, size: int, mean, std, seed: int | None) -> None:
        self.length, self.size, self.seed = length, size, seed
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        else:
            rng = np.random.default_rng((self.seed, i))
        label = i % len(SHAPES)
        image, mask, box = make_shape_image(label, self.size, rng)
        image_t = torch.from_numpy(image).permute(2, 0, 1)
        return {
            "image": (image_t - self.mean) / self.std,
            "label": torch.tensor(label),
            "box": torch.from_numpy(box).unsqueeze(0),
            "mask": torch.from_numpy(mask),
            "index": torch.tensor(i),
        }


class ShapesDataModule(LocalizationDataModule):
    """Circles, squares, triangles and crosses on striped, noisy backgrounds; boxes and masks.

    Args:
        image_size: image side in pixels.
        train_size, val_size, test_size: images per split (val/test fixed, train redrawn).
        seed: seeds the fixed val/test images.
        batch_size, num_workers, pin_memory: data loader settings.
    """

    class_names = SHAPES
    in_channels = 3
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(
        self,
        image_size: int = 64,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 200,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self._remember(locals())
        for name, value in (("image_size", image_size), ("train_size", train_size),
                            ("val_size", val_size), ("test_size", test_size)):  # fmt: skip
            check_count(name, value, 1)
        self.image_size, self.seed = image_size, seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def setup(self, stage: str | None = None) -> None:
        seeds = {"train": None, "val": 2 * self.seed + 1, "test": 2 * self.seed + 2}
        for split, n in self.sizes.items():
            self.splits.setdefault(
                split, ShapesDataset(n, self.image_size, self.mean, self.std, seeds[split])
            )

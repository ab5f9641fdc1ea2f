"""Localization MNIST: a digit pasted at a random position and scale on a larger canvas."""

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

# Pixels of the resized digit brighter than this (of 255) are ink; they define the tight box.
INK_THRESHOLD = 32


def place_digit(
    digit: np.ndarray, canvas_size: int, scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pastes one digit on a black canvas.

    Args:
        digit: uint8 ``[28, 28]``.
        canvas_size: side ``S`` of the square canvas.
        scale: the digit's side becomes ``round(28 * scale)`` pixels (at most ``S``).
        rng: draws the position.

    Returns:
        canvas uint8 ``[S, S]`` and the tight box of the ink, int64 ``[4]`` (x0, y0, x1, y1),
        inclusive.
    """
    side = min(canvas_size, max(8, round(digit.shape[0] * scale)))
    patch = cv2.resize(digit, (side, side), interpolation=cv2.INTER_LINEAR)
    x, y = rng.integers(0, canvas_size - side + 1, size=2)
    canvas = np.zeros((canvas_size, canvas_size), np.uint8)
    canvas[y : y + side, x : x + side] = patch
    ys, xs = np.nonzero(canvas > INK_THRESHOLD)
    if len(xs) == 0:  # a blank digit: the whole patch is the object
        return canvas, np.array([x, y, x + side - 1, y + side - 1], np.int64)
    return canvas, np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.int64)


class CanvasDigits(Dataset):
    """Digits on a canvas, with their ground-truth boxes.

    Args:
        digits: uint8 ``[N, 28, 28]``.
        labels: int ``[N]``.
        canvas_size: canvas side in pixels.
        scale_range: the digit's scale is drawn uniformly from ``[lo, hi]`` (1 = 28 px).
        mean, std: normalisation of the ``[0, 1]`` image.
        seed: ``None`` draws a new placement at every access (training augmentation, from torch's
            RNG so ``seed_everything`` and worker seeding make it reproducible); an int makes the
            placement of item ``i`` a fixed function of ``(seed, i)`` (val/test: same boxes every
            run).
    """

    def __init__(
        self,
        digits: np.ndarray,
        labels: np.ndarray,
        canvas_size: int,
        scale_range: tuple[float, float],
        mean: float,
        std: float,
        seed: int | None,
    ) -> None:
        if digits.ndim != 3 or digits.dtype != np.uint8:
            raise ValueError(f"digits must be uint8 [N, 28, 28], got {digits.dtype} {digits.shape}")
        self.digits, self.labels = digits, np.asarray(labels, np.int64)
        self.canvas_size, self.scale_range = canvas_size, tuple(scale_range)
        self.mean, self.std, self.seed = mean, std, seed

    def __len__(self) -> int:
        return len(self.digits)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.seed is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        else:
            rng = np.random.default_rng((self.seed, i))
        scale = rng.uniform(*self.scale_range)
        canvas, box = place_digit(self.digits[i], self.canvas_size, scale, rng)
        image = (torch.from_numpy(canvas).float().div_(255) - self.mean) / self.std
        return {
            "image": image.unsqueeze(0),
            "label": torch.tensor(self.labels[i]),
            "box": torch.from_numpy(box).unsqueeze(0),
            "index": torch.tensor(i),
        }

"""Hide-and-Seek (Singh & Lee, ICCV 2017): random image patches hidden at train time."""

import math

import torch
from torch import Tensor

from camlab.methods.base import Criterion, WSOLMethod
from camlab.models.gap import GAPNet


def hide_patches(
    images: Tensor, grid_size: int, drop_rate: float, generator: torch.Generator | None = None
) -> Tensor:
    """Sets each ``grid_size`` x ``grid_size`` patch of each image to 0 with probability
    ``drop_rate`` (all channels), as the reference's ``has()``: patch (i, j) of image b is
    hidden when its uniform draw ``u[b, i, j] <= drop_rate``. Images are normalised, so 0 is
    the data set's mean pixel, the fill value the paper prescribes (it keeps the activation
    statistics of training and test images alike).

    Args:
        images: ``[B, C, H, W]``.
        grid_size: patch side in pixels (the reference's ``has_grid_size``, the step of its
            patch loops); 0 hides nothing. Border patches are cut at the image edge.
        drop_rate: probability of hiding a patch.
        generator: random source of the ``[B, ceil(H / g), ceil(W / g)]`` draws (row-major
            patch order); the global one when None.

    Returns:
        A new ``[B, C, H, W]`` tensor (the input is not modified).
    """
    if grid_size == 0:
        return images
    b, _, h, w = images.shape
    rows, cols = math.ceil(h / grid_size), math.ceil(w / grid_size)
    draws = torch.rand((b, rows, cols), generator=generator, device=images.device)
    hidden = (draws <= drop_rate).repeat_interleave(grid_size, 1)
    hidden = hidden.repeat_interleave(grid_size, 2)[:, :h, :w]
    return images.masked_fill(hidden[:, None], 0.0)


class HaS(WSOLMethod):
    """Hide-and-Seek: the network is trained on images with random patches hidden, so it
    must find every part of the object; test images are shown whole.

    Args:
        grid_size: patch side in pixels (reference default 4).
        drop_rate: probability of hiding each patch (reference default 0.5).
    """

    name = "has"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, grid_size: int = 4,
        drop_rate: float = 0.5,
    ) -> None:  # fmt: skip
        super().__init__(net, backbone, num_classes)
        if grid_size < 0 or not 0.0 <= drop_rate <= 1.0:
            raise ValueError("grid_size must be >= 0 and drop_rate in [0, 1]")
        self.grid_size, self.drop_rate = int(grid_size), float(drop_rate)

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        hidden = hide_patches(images, self.grid_size, self.drop_rate)
        return super().training_loss(net, hidden, labels, criterion)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, drop_rate={self.drop_rate}"

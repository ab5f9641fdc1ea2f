"""torchvision's vision transformers (``vit_*``, ``swin_*``): their layers' outputs as grids.

CAM methods work on ``[B, C, h, w]`` maps; transformer layers output tokens. This module picks,
for torchvision's ``VisionTransformer`` and ``SwinTransformer``, what pytorch-grad-cam asks the
user to write as a ``reshape_transform``:

- ViT: a block outputs ``[B, 1 + h*w, C]``, the class token first, then the patches row by row;
  the grid is ``[B, C, h, w]`` of the patch tokens (class token dropped), ``h = H / patch``.
  The default layer is the last block's ``ln_1``: only the class token reaches the head, so the
  patch tokens after the last block get no gradient, while at the last block's input they reach
  it through the last self-attention (pytorch-grad-cam's advice, ``blocks[-1].norm1``).
- Swin: stages and ``norm`` output channels-last ``[B, h, w, C]``; the grid is the permutation to
  ``[B, C, h, w]``. The default layer is ``norm``, which feeds global average pooling and the
  linear ``head``, so CAM and the closed-form gradient apply there as on a CNN.
"""

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models import SwinTransformer, VisionTransformer


@dataclass(frozen=True)
class TokenGrid:
    """A layer output -> ``[B, C, h, w]`` map, for ViT tokens or Swin's channels-last maps.

    Attributes:
        channels_last: raw outputs hold channels in their last dim (both token layouts).
        grid: ``(h, w)`` patch grid of ViT tokens; ``None`` for Swin (already spatial).
    """

    grid: tuple[int, int] | None = None
    channels_last: bool = True

    def __call__(self, raw: Tensor) -> Tensor:
        """``[B, T, C]`` tokens (class tokens dropped) / ``[B, h, w, C]`` -> ``[B, C, h, w]``."""
        if self.grid is None:
            return raw.permute(0, 3, 1, 2)
        h, w = self.grid
        if raw.dim() != 3 or raw.shape[1] < h * w:
            return raw  # not tokens (e.g. conv_proj's [B, C, h, w]); the capture checks shapes
        return raw[:, raw.shape[1] - h * w :].transpose(1, 2).reshape(raw.shape[0], -1, h, w)


def _transformers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, VisionTransformer | SwinTransformer)
    ]


def transformer_cam_layer(model: nn.Module) -> str | None:
    """Default CAM layer of the first torchvision ViT / Swin in ``model``, or ``None``."""
    found = _transformers(model)
    if not found:
        return None
    name, net = found[0]
    prefix = f"{name}." if name else ""
    if isinstance(net, SwinTransformer):
        return f"{prefix}norm"
    last = list(net.encoder.layers.named_children())[-1][0]
    return f"{prefix}encoder.layers.{last}.ln_1"


def token_transform(
    model: nn.Module, layer: nn.Module, image_shape: tuple[int, ...]
) -> TokenGrid | None:
    """The grid transform for ``layer`` of a torchvision ViT / Swin inside ``model``, or ``None``.

    Args:
        model: the (unwrapped) model.
        layer: the target layer.
        image_shape: the input's shape ``[B, 3, H, W]`` (ViT's patch grid is ``H/p x W/p``).
    """
    for _, net in _transformers(model):
        if not any(m is layer for m in net.modules()):
            continue
        if isinstance(net, VisionTransformer):
            if layer is net.conv_proj or layer is net.heads or layer in net.heads.modules():
                return None
            p = net.patch_size
            return TokenGrid(grid=(image_shape[-2] // p, image_shape[-1] // p))
        # Swin: everything in ``features`` but the patch-embedding conv, and ``norm``, is NHWC.
        in_features = any(m is layer for m in net.features.modules())
        if (in_features and not isinstance(layer, nn.Conv2d)) or layer is net.norm:
            return TokenGrid()
        return None
    return None


def transformer_head(model: nn.Module, layer: nn.Module) -> nn.Linear | None:
    """Swin's ``head`` when ``layer`` is its ``norm`` (GAP + linear follow); else ``None``."""
    for _, net in _transformers(model):
        if isinstance(net, SwinTransformer) and layer is net.norm:
            return net.head
    return None

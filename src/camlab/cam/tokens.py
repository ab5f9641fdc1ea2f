"""Vision transformers (torchvision's ``vit_*``, ``swin_*``; timm's ViT / DeiT / EVA / BEiT and
Swin): their layers' outputs as grids.

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

timm's models work alike: ViT-like models (``patch_embed`` + ``blocks``; DeiT's distillation and
register tokens are prefix tokens too) default to ``blocks[-1].norm1``, Swin (channels-last
``layers``) to ``norm``. timm is only looked at once imported: no timm model exists before.
"""

import sys
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


def _is_timm_vit(module: nn.Module) -> bool:
    # Duck-typed: timm's ViT, DeiT, EVA, BEiT, CaiT share these attributes, not a base class.
    return (
        type(module).__module__.startswith("timm.")
        and isinstance(getattr(module, "patch_embed", None), nn.Module)
        and isinstance(getattr(module, "blocks", None), nn.Sequential | nn.ModuleList)
        and hasattr(module, "num_prefix_tokens")
    )


def _is_timm_swin(module: nn.Module) -> bool:
    if "timm" not in sys.modules:
        return False
    from timm.models.swin_transformer import SwinTransformer as TimmSwin
    from timm.models.swin_transformer_v2 import SwinTransformerV2 as TimmSwinV2

    return isinstance(module, TimmSwin | TimmSwinV2)


def _transformers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    timm_loaded = "timm" in sys.modules
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, VisionTransformer | SwinTransformer)
        or (timm_loaded and (_is_timm_vit(m) or _is_timm_swin(m)))
    ]


def transformer_cam_layer(model: nn.Module) -> str | None:
    """Default CAM layer of the first ViT / Swin (torchvision's or timm's) in ``model``, or
    ``None``."""
    found = _transformers(model)
    if not found:
        return None
    name, net = found[0]
    prefix = f"{name}." if name else ""
    if isinstance(net, SwinTransformer) or _is_timm_swin(net):
        return f"{prefix}norm"
    if _is_timm_vit(net):
        return f"{prefix}blocks.{len(net.blocks) - 1}.norm1"
    last = list(net.encoder.layers.named_children())[-1][0]
    return f"{prefix}encoder.layers.{last}.ln_1"


def _inside(layer: nn.Module, module: nn.Module | None) -> bool:
    return module is not None and any(m is layer for m in module.modules())


def token_transform(
    model: nn.Module, layer: nn.Module, image_shape: tuple[int, ...]
) -> TokenGrid | None:
    """The grid transform for ``layer`` of a ViT / Swin inside ``model``, or ``None``.

    Args:
        model: the (unwrapped) model.
        layer: the target layer.
        image_shape: the input's shape ``[B, 3, H, W]`` (ViT's patch grid is ``H/p x W/p``).
    """
    for _, net in _transformers(model):
        if not _inside(layer, net):
            continue
        if _is_timm_vit(net):
            # Tokens everywhere but in the patch embedding's conv and the pooled head.
            head = [getattr(net, n, None) for n in ("head", "fc_norm", "attn_pool", "head_dist")]
            if isinstance(layer, nn.Conv2d) or any(_inside(layer, m) for m in head):
                return None
            embed = net.patch_embed
            if hasattr(embed, "dynamic_feat_size"):
                return TokenGrid(grid=tuple(embed.dynamic_feat_size(tuple(image_shape[-2:]))))
            return TokenGrid(grid=tuple(embed.grid_size))
        if _is_timm_swin(net):  # channels-last from the patch embedding to ``norm``
            if isinstance(layer, nn.Conv2d) or _inside(layer, net.head):
                return None
            return TokenGrid()
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
    """Swin's linear head when ``layer`` is its ``norm`` (GAP + linear follow); else ``None``."""
    for _, net in _transformers(model):
        if isinstance(net, SwinTransformer) and layer is net.norm:
            return net.head
        if _is_timm_swin(net) and layer is net.norm and isinstance(net.head.fc, nn.Linear):
            pooled = getattr(net.head.global_pool, "pool_type", "") == "avg"
            return net.head.fc if pooled else None
    return None

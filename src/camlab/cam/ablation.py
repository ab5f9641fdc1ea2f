"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): a channel's weight is the score drop when it is
zeroed, ``w_c = (y_t - y_t(A with A_c = 0)) / y_t``, and ``L = ReLU(sum_c w_c A_c)``.

Cost, and how it is cut without changing a score:

- A verified GAP + linear head after the layer makes the ablated score exact in closed form:
  ``y_t(A, A_c = 0) = y_t - w_t[c] mean(A_c)``; no forward pass at all (``closed_form=False``
  forces the passes).
- Otherwise one pass of the layers after the target layer per (image, channel), in chunks of
  ``max_batch``: a forward hook replaces the layer's output by the ablated copies. The layers
  before it still run (a forward cannot start in the middle of a model), but on a copy of the
  images shrunk to 32 px, since their output is discarded. That shortcut is used only after
  one pass with the unablated activation reproduced the model's logits (so nothing after the
  layer reads the layers before it, e.g. a skip connection around the target); a model that
  rejects the small input (a ViT's fixed image size) or fails the check gets full-size passes.
- Channels that are zero everywhere are already "ablated": their score is the original one.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlab.cam.context import CamInputs
from camlab.cam.tokens import TokenGrid
from camlab.errors import CamlabError

SHRUNK_SIDE = 32  # smallest side the pre-layer copy is shrunk to (ResNets accept 32 px)


def _replace_output(net: nn.Module, layer: nn.Module, inputs: Tensor, output: Tensor) -> Tensor:
    """``net(inputs)`` with ``layer``'s output replaced by ``output``; logits ``[n, K]``."""
    handle = layer.register_forward_hook(lambda _m, _i, _o: output)
    try:
        return net(inputs)
    finally:
        handle.remove()


def _pre_layer_inputs(inp: CamInputs) -> Tensor:
    """The images, or a copy shrunk to ``SHRUNK_SIDE`` px when it gives the same logits."""
    images = inp.images
    side = min(images.shape[-2:])
    if images.dim() != 4 or side <= SHRUNK_SIDE:
        return images
    scale = SHRUNK_SIDE / side
    size = (max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale)))
    small = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    try:
        logits = _replace_output(inp.run_model, inp.layer, small, inp.raw.clone())
    except Exception:  # noqa: BLE001 - any failure on the small copy means: use full-size passes
        return images
    ref = inp.logits.float()
    ok = logits.shape == ref.shape and bool(
        ((logits.float() - ref).abs().max() <= 1e-4 * (1 + ref.abs().max())).item()
    )
    return small if ok else images


def _channel_dim(inp: CamInputs) -> int:
    if inp.transform is None:
        return 1
    if isinstance(inp.transform, TokenGrid):
        return -1
    raise CamlabError(
        "method='ablationcam' cannot ablate channels through a custom reshape_transform (it "
        "cannot tell which dimension of the layer's output holds the channels)."
    )


def ablated_scores(inp: CamInputs) -> Tensor:
    """Target scores with each channel zeroed in turn, ``[B, C, k]``, by real forward passes."""
    raw, targets = inp.raw, inp.targets
    cdim = _channel_dim(inp)
    per_channel = raw.movedim(cdim, 1).flatten(2)  # [B, C, rest]; ViT: class token included
    c = per_channel.shape[1]
    dead = (per_channel == 0).all(2)  # [B, C]: ablating changes nothing
    scores = inp.logits.float().gather(1, targets)[:, None, :].repeat(1, c, 1)  # [B, C, k]
    todo = (~dead).nonzero()
    if todo.numel() == 0:
        return scores
    pre = _pre_layer_inputs(inp)
    for start in range(0, todo.shape[0], inp.max_batch):
        img, ch = todo[start : start + inp.max_batch].unbind(1)
        batch = raw[img].clone()
        # Zero, as in the paper; pytorch-grad-cam uses min - 1e7 (compounding along the chunk)
        # when the layer's minimum is not 0 (post-ReLU layers have minimum 0: both agree).
        batch.movedim(cdim, 1)[torch.arange(img.shape[0], device=img.device), ch] = 0
        logits = _replace_output(inp.run_model, inp.layer, pre[img], batch).float()
        scores[img, ch] = logits.gather(1, targets[img])
    return scores


def ablation_weights(inp: CamInputs) -> Tensor:
    """``w_c = (y_t - y_t^{(c)}) / y_t``, ``[B, k, C]`` (0 where ``y_t = 0``)."""
    y = inp.logits.float().gather(1, inp.targets)  # [B, k]
    if inp.closed_form and inp.head is not None:
        means = inp.acts.mean((2, 3))  # [B, C]
        drop = inp.head.weight.float()[inp.targets] * means[:, None, :]  # [B, k, C]
    else:
        drop = y[:, :, None] - ablated_scores(inp).transpose(1, 2)
    ratio = drop / torch.where(y != 0, y, 1)[:, :, None]
    return torch.where(y[:, :, None] != 0, ratio, 0)

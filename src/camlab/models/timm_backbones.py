"""timm models as ``GAPNet`` backbones: ``forward_features`` as ``[B, C, h, w]`` maps.

Every timm model has ``forward_features``, the unpooled output of its last stage. Where its head is
global average pooling + linear (ResNets, EfficientNets, Swin), ``GAPNet``'s pooling and new linear
layer are that head. Where a norm sits between the pooling and the linear layer (ConvNeXt's
``head.norm``, the ``fc_norm`` of average-pooled ViTs), it is applied at every position before the
pooling instead (timm's own ``head_norm_first`` placement), so the head stays GAP + linear and CAM
stays exact. ViT / DeiT tokens become their patch grid (class, distillation and register tokens
dropped: GAP over the patch tokens, timm's ``global_pool='avg'``); Swin's channels-last maps are
permuted. Other head layers (MobileNetV3's ``conv_head``, attention pooling, pre-logits MLPs) are
removed: a CAM needs the linear layer right after the pooling.

timm is imported when a timm backbone is built (its import takes seconds).
"""

import difflib
import os

import torch
from torch import Tensor, nn

from camlab.errors import CamlabError
from camlab.evalmode import eval_mode
from camlab.models.gap import GAPNet


class TimmFeatures(nn.Module):
    """A timm model's ``forward_features`` (+ the head's moved norm) as ``[B, C, h, w]`` maps.

    Args:
        model: the timm model, its classifier removed.
        norm: the head's norm, applied at every position (``nn.Identity`` if none).
        channels_last: ``forward_features`` gives ``[B, h, w, C]`` (Swin).
    """

    def __init__(self, model: nn.Module, norm: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.norm = norm
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, in_channels, H, W]`` -> feature maps ``[B, C, h, w]``."""
        out = self.norm(self.model.forward_features(x))
        if out.dim() == 3:  # ViT tokens [B, prefix + h*w, C], the patches row by row
            h, w = self._grid(tuple(x.shape[-2:]), out.shape[1])
            return out[:, out.shape[1] - h * w :].transpose(1, 2).reshape(out.shape[0], -1, h, w)
        return out.permute(0, 3, 1, 2) if self.channels_last else out

    def _grid(self, size: tuple[int, int], tokens: int) -> tuple[int, int]:
        """The ``(h, w)`` patch grid of ``tokens`` output tokens for an input of ``size``."""
        embed = getattr(self.model, "patch_embed", None)
        if hasattr(embed, "dynamic_feat_size"):
            h, w = embed.dynamic_feat_size(size)
        else:  # other token models (XCiT, LeViT): the last stage's stride
            r = self.model.feature_info[-1]["reduction"]
            h, w = -(-size[0] // r), -(-size[1] // r)
        # Undeclared (CoaT): any leading surplus are class tokens, as in ``camlab.cam.tokens``.
        prefix = getattr(self.model, "num_prefix_tokens", max(tokens - h * w, 0))
        if tokens != prefix + h * w:
            raise CamlabError(
                f"{type(self.model).__name__} gave {tokens} tokens for a {h}x{w} patch grid and "
                f"{prefix} class/register tokens: camlab cannot map its tokens to image positions "
                "(it pools them inside the network). Use a ViT, DeiT, Swin or CNN model."
            )
        return h, w


def _move_head_norm(model: nn.Module) -> nn.Module:
    """Takes the norm out of the model's head (to be applied before the pooling)."""
    for owner, attr in ((model, "fc_norm"), (getattr(model, "head", None), "norm")):
        norm = getattr(owner, attr, None)
        if isinstance(norm, nn.Module) and not isinstance(norm, nn.Identity):
            setattr(owner, attr, nn.Identity())
            return norm
    return nn.Identity()


def _strip_head(features: TimmFeatures, name: str, in_channels: int, side: int) -> None:
    """Removes the head layers ``forward_features`` does not run (MobileNetV3's ``conv_head``,
    attention pooling, pre-logits layers), so no parameter lacks a gradient (DDP fails on those)
    or sits in the optimizer. Found by one forward pass of a blank image, which also checks that
    images of ``side`` px fit the network."""
    model = features.model
    try:
        model.reset_classifier(0, "")  # no pooling, no classifier (ViT: no attention pooling)
    except (AssertionError, TypeError, ValueError):
        model.reset_classifier(0)  # a model that pools one way only
    ran: set[int] = set()
    hooks = [m.register_forward_pre_hook(lambda m, _: ran.add(id(m))) for m in model.modules()]
    try:
        with eval_mode(features):
            features(torch.zeros(1, in_channels, side, side))
    except RuntimeError as err:
        raise CamlabError(
            f"Images of {side} px do not fit timm model '{name}' ({err}). Use larger images "
            f"(e.g. data.canvas_size=224 or data.image_size=224) or another model."
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
    for child_name, child in list(model.named_children()):
        # ModuleLists never run themselves: a child ran if any layer with weights in it ran.
        weighted = [m for m in child.modules() if any(True for _ in m.parameters(recurse=False))]
        if weighted and not any(id(m) in ran for m in weighted):
            setattr(model, child_name, nn.Identity())


def _unknown(name: str, timm_module) -> CamlabError:
    close = difflib.get_close_matches(name, timm_module.list_models(), n=5, cutoff=0.6)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return CamlabError(
        f"Unknown timm model '{name}'.{hint} List valid names with "
        "python -c \"import timm; print(timm.list_models('*resnet*'))\" (any pattern; "
        "timm.list_models(pretrained=True) for those with weights) and set model.name=<name>."
    )


def _weights_source(timm_module, name: str) -> tuple[str, str]:
    """``(what, where to put it offline)`` of the default pretrained weights of ``name``."""
    from huggingface_hub import constants

    cfg = timm_module.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        return (
            f"Hugging Face Hub repo {cfg.hf_hub_id}",
            f"the Hugging Face cache {constants.HF_HUB_CACHE} (HF_HOME moves it; copy it from a "
            f"machine where `hf download {cfg.hf_hub_id}` ran; HF_HUB_OFFLINE=1 skips the "
            "retries)",
        )
    url = cfg.url if cfg is not None else None
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    return f"{url}", f"{cache} (download {url} elsewhere; TORCH_HOME moves the cache)"


def timm_model(name: str, in_channels: int, pretrained: bool, image_size: int | None) -> nn.Module:
    """``timm.create_model`` without classifier; pretrained weights through timm's own loading.

    Args:
        name: a ``timm.list_models()`` name, optionally with a weight tag (``resnet18.a1_in1k``).
        in_channels: image channels (timm adapts the pretrained first conv).
        pretrained: load timm's default pretrained weights.
        image_size: input side of models built for one input size (ViT, Swin), else ignored.
    """
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise _unknown(name, timm)
    kwargs = {"num_classes": 0, "in_chans": in_channels}
    cfg = timm.models.get_pretrained_cfg(name)
    if image_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = image_size  # position embeddings / windows for this size
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise CamlabError(
            f"timm has no pretrained weights for '{name}'. Pick a model that has some "
            "(timm.list_models(pretrained=True)) or train from scratch with model.pretrained=false."
        )
    what, where = _weights_source(timm, name)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as err:  # URLError, Hugging Face Hub errors are OSErrors
        raise CamlabError(
            f"Could not load the pretrained weights of timm model '{name}' from {what} ({err}). "
            f"Without internet, put them in {where}, or train from scratch with "
            "model.pretrained=false."
        ) from err


def build_timm_gapnet(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    image_size: int | None = None,
) -> GAPNet:
    """Builds a GAP classifier from any timm model (``model=timm model.name=<name>``).

    Args:
        name: a ``timm.list_models()`` name (optionally ``name.tag`` for other weights).
        num_classes: classes of the new linear head.
        in_channels: image channels.
        pretrained: load timm's pretrained weights into the backbone.
        image_size: input side (ViT / Swin are built for it; one the network cannot take fails
            here).
    """
    model = timm_model(name, in_channels, pretrained, image_size)
    norm = _move_head_norm(model)
    features = TimmFeatures(model, norm, getattr(model, "output_fmt", "NCHW") == "NHWC")
    side = image_size or model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    _strip_head(features, name, in_channels, side)
    return GAPNet(features, model.num_features, num_classes)

"""Torchvision backbones cut at their last convolutional stage, wrapped as ``GAPNet``."""

import os
from collections import OrderedDict
from collections.abc import Callable
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from camlab.errors import CamlabError
from camlab.imagenet import IMAGENET_MEAN, IMAGENET_STD
from camlab.models.gap import GAPNet


def _resnet(tv: nn.Module) -> tuple[nn.Module, int]:
    layers = [tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4]
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(OrderedDict(zip(names, layers, strict=True))), tv.fc.in_features


def _vgg16(tv: nn.Module) -> tuple[nn.Module, int]:
    # CAM paper (Zhou et al. 2016): drop pool5 and the FC layers -> 14x14 at 224 px.
    return tv.features[:-1], 512


class InceptionTransformInput(nn.Module):
    """torchvision's ``Inception3(transform_input=True)`` remap, which its ``forward`` applies and
    a cut backbone would lose: ImageNet-normalised RGB -> the (x - 0.5) / 0.5 scaling Google's
    pretrained weights expect."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        scale, shift = std / 0.5, (mean - 0.5) / 0.5
        if in_channels != 3:  # gray input (first conv's RGB filters summed): the mean remap
            scale, shift = scale.mean().expand(in_channels), shift.mean().expand(in_channels)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _inception_v3(tv: nn.Module) -> tuple[nn.Module, int]:
    names = [
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
        "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
        "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
    ]  # fmt: skip
    layers = [(n, getattr(tv, n)) for n in names]
    if tv.transform_input:  # set by torchvision for the pretrained weights
        layers.insert(0, ("transform_input", InceptionTransformInput()))
    return nn.Sequential(OrderedDict(layers)), 2048


def _densenet(tv: nn.Module) -> tuple[nn.Module, int]:
    # torchvision applies the final ReLU functionally in forward(); make it a layer.
    return nn.Sequential(tv.features, nn.ReLU(inplace=False)), tv.classifier.in_features


def _features(dim: int) -> Callable[[nn.Module], tuple[nn.Module, int]]:
    return lambda tv: (tv.features, dim)


# name -> (cut function, smallest input side the network accepts)
BACKBONES: dict[str, tuple[Callable[[nn.Module], tuple[nn.Module, int]], int]] = {
    "resnet18": (_resnet, 32),
    "resnet34": (_resnet, 32),
    "resnet50": (_resnet, 32),
    "resnet101": (_resnet, 32),
    "vgg16": (_vgg16, 16),
    "inception_v3": (_inception_v3, 75),
    "densenet121": (_densenet, 32),
    "mobilenet_v2": (_features(1280), 32),
    "squeezenet1_1": (_features(512), 32),
    "efficientnet_b0": (_features(1280), 32),
}


def torchvision_model(name: str, pretrained: bool) -> nn.Module:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        if name == "inception_v3":  # the checkpoint holds the auxiliary head
            model = torchvision.models.get_model(name, weights=weights)
            model.AuxLogits = None
            return model
        return torchvision.models.get_model(name, weights=weights)
    except (URLError, OSError, RuntimeError) as err:
        raise CamlabError(
            f"Could not load the pretrained ImageNet weights {weights} for '{name}' ({err}). "
            f"Without internet, put the file at {cached} (download {weights.url} elsewhere; "
            f"TORCH_HOME moves the cache), or train from scratch with model.pretrained=false."
        ) from err


def check_input_size(name: str, image_size: int | None) -> None:
    """Fails, with the fix, on inputs smaller than the backbone accepts (``BACKBONES``)."""
    if name not in BACKBONES or image_size is None:
        return
    minimum = BACKBONES[name][1]
    if image_size < minimum:
        fits = sorted(n for n, (_, side) in BACKBONES.items() if side <= image_size)
        raise CamlabError(
            f"Images of {image_size} px are too small for '{name}', which needs at least "
            f"{minimum} px on a side (its strided layers shrink the feature map to nothing). "
            f"Use larger images (e.g. data.canvas_size={minimum} or data.image_size={minimum}) "
            f"or a backbone that accepts {image_size} px: {', '.join(fits) or 'none'}."
        )


def _adapt_input_channels(backbone: nn.Module, in_channels: int) -> None:
    """Replaces the first conv so it takes ``in_channels``; pretrained RGB filters are summed
    (grayscale) or averaged, so a gray image replicated to RGB gives the same response."""
    name, conv = next((n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None,
    )  # fmt: skip
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (conv.in_channels / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(backbone.get_submodule(parent_name) if parent_name else backbone, attr, new)


def _resnet_last_stage_stride1(backbone: nn.Module) -> None:
    """WSOL practice: layer4 at stride 1 doubles the CAM resolution (7x7 -> 14x14 at 224 px)."""
    block = backbone.layer4[0]
    strided = block.conv2 if hasattr(block, "conv3") else block.conv1  # Bottleneck vs Basic
    strided.stride = (1, 1)
    block.downsample[0].stride = (1, 1)


def build_gapnet(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    hires_cam: bool = False,
) -> GAPNet:
    """Builds a GAP classifier from a torchvision backbone.

    Args:
        name: one of ``BACKBONES``.
        num_classes: classes of the new linear head.
        in_channels: image channels (1 for grayscale; the first conv is adapted).
        pretrained: load torchvision's ImageNet weights into the backbone.
        hires_cam: ResNets only: last stage at stride 1 (feature maps twice as large).
    """
    if name not in BACKBONES:
        raise CamlabError(
            f"Unknown backbone '{name}'. Valid choices: {', '.join(sorted(BACKBONES))}."
        )
    if hires_cam and not name.startswith("resnet"):
        raise CamlabError(
            f"hires_cam is a ResNet option (last stage at stride 1); '{name}' does not support it. "
            "Use a resnet backbone or model.hires_cam=false."
        )
    cut, _ = BACKBONES[name]
    backbone, dim = cut(torchvision_model(name, pretrained))
    _adapt_input_channels(backbone, in_channels)
    if "transform_input" in backbone._modules:
        backbone.transform_input = InceptionTransformInput(in_channels)
    if hires_cam:
        _resnet_last_stage_stride1(backbone)
    neck = None
    if name == "vgg16":  # the CAM paper's extra conv: 3x3, 1024 units, then GAP
        neck = nn.Sequential(nn.Conv2d(dim, 1024, 3, padding=1), nn.ReLU(inplace=True))
        dim = 1024
    return GAPNet(backbone, dim, num_classes, neck)

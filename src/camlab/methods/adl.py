"""Attention-based Dropout Layer (Choe & Shim, CVPR 2019), at the reference's positions."""

import torch
from torch import Tensor, nn

from camlab.methods.base import WSOLMethod, unsupported_backbone
from camlab.models.gap import GAPNet
from camlab.models.reference import ReferenceNet


def adl_maps(features: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """ADL's two maps from the self-attention map ``a = mean over channels of the features``.

    Args:
        features: ``[B, C, h, w]``.
        threshold: gamma, the drop threshold as a fraction of each image's maximum of ``a``.

    Returns:
        ``(importance map sigmoid(a), drop mask [a < threshold * max a])``, both float
        ``[B, 1, h, w]``.
    """
    attention = features.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.sigmoid(attention), (attention < threshold * peak).to(features.dtype)


class ADL(nn.Module):
    """One attention-based dropout layer: in training, multiplies the features by the drop
    mask (hiding the most discriminative region) with probability ``drop_rate``, else by the
    importance map (stressing it); one draw per forward pass for the whole batch, as in the
    reference. The identity in eval mode.

    Args:
        drop_rate: probability of using the drop mask (reference default 0.75).
        threshold: gamma of ``adl_maps`` (reference default 0.9).
    """

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9) -> None:
        super().__init__()
        if not (0.0 <= drop_rate <= 1.0 and 0.0 <= threshold <= 1.0):
            raise ValueError("ADL drop_rate and threshold must be in [0, 1]")
        self.drop_rate, self.threshold = float(drop_rate), float(threshold)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, C, h, w]`` -> ``[B, C, h, w]``."""
        if not self.training:
            return features
        importance, drop_mask = adl_maps(features, self.threshold)
        # floor(U[0, 1) + rate) is 1 with probability rate: the reference's selection.
        use_drop = torch.floor(torch.rand((), device=features.device) + self.drop_rate)
        return features * ((1.0 - use_drop) * importance + use_drop * drop_mask)

    def hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        """Forward hook: applies the layer to ``module``'s output (a bound method, so a
        deep copy of the model rebinds it to the copied layer)."""
        return self(output)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def adl_positions(backbone: str, net: GAPNet) -> list[str]:
    """Layers (names under ``net.features.backbone``) whose outputs pass through an ADL: the
    reference's choices, mapped onto torchvision's layers.

    - ResNet (``_ADL_POSITION``): after block 0 of layer3, after the first and the last block
      of layer4.
    - VGG16 (its 14x14 config): after pool3, after conv4_3 (before pool4), after conv5_3.
    - Inception-v3: after Mixed_5d, after Mixed_6e and after the CAM layer (the reference's
      third ADL follows its last conv before the classifier; our CAM layer is Mixed_7c).
    """
    layers = net.features.backbone
    if backbone.startswith("resnet"):
        return ["layer3.0", "layer4.0", f"layer4.{len(layers.layer4) - 1}"]
    if backbone == "vgg16":
        return ["16", "22", "29"]
    if backbone == "inception_v3":
        return ["Mixed_5d", "Mixed_6e", "Mixed_7c"]
    raise unsupported_backbone("adl", backbone, ["vgg16", "inception_v3", "resnet18/34/50/101"])


class ADLMethod(WSOLMethod):
    """ADL: dropout layers driven by the network's own attention, inserted as forward hooks
    so the network's layers and state-dict keys are those of the plain model (pretrained
    weights load as they are, checkpoints stay interchangeable). The loss is plain
    cross-entropy; the layers do nothing at eval time. On a reference network
    (``camlab.models.reference``) the layers go where it says (``net.adl_positions``; e.g.
    Inception-v3's third after its new convolutions, not after Mixed_7c).

    Args:
        drop_rate: probability of the drop mask per layer and step (reference 0.75).
        threshold: gamma (reference ``adl_threshold`` 0.9).
    """

    name = "adl"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, drop_rate: float = 0.75,
        threshold: float = 0.9,
    ) -> None:  # fmt: skip
        super().__init__(net, backbone, num_classes)
        # Names under net.features.
        if isinstance(net, ReferenceNet):
            self.positions = list(net.adl_positions)
        else:
            self.positions = [f"backbone.{name}" for name in adl_positions(backbone, net)]
        self.layers = nn.ModuleList(ADL(drop_rate, threshold) for _ in self.positions)
        for name, layer in zip(self.positions, self.layers, strict=True):
            net.features.get_submodule(name).register_forward_hook(layer.hook)

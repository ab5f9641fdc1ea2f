"""Self-Produced Guidance (Zhang et al., ECCV 2018), as the wsolevaluation reference trains it."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlab.methods.base import (
    Criterion,
    WSOLMethod,
    label_cam,
    minmax_with_validity,
    unsupported_backbone,
)
from camlab.models.gap import GAPNet
from camlab.models.reference import KeyMap, ReferenceNet

IGNORE = 255.0  # mask value of pixels left out of the attention losses
# The reference's rule: an image with fewer foreground pixels than this (at the 224 x 224 map
# size it upsamples to) takes those above 0.7 of its maximum instead.
MIN_FOREGROUND_PIXELS = 30
FALLBACK_FRACTION = 0.7


def spg_mask(attention: Tensor, high: float, low: float, valid: Tensor | None = None) -> Tensor:
    """A self-produced guidance mask: 1 where ``attention > high`` (or, for images with fewer
    than 30 such pixels, ``> 0.7 * max``), then 0 where ``attention < low``, ``IGNORE``
    elsewhere (the reference's ``get_mask``: background wins where both hold).

    Args:
        attention: ``[B, 1, H, W]``.
        high, low: the thresholds.
        valid: ``[B]`` bool; images marked False (a constant map, NaN in the reference) are
            ignored entirely.

    Returns:
        float ``[B, 1, H, W]`` with values in {0, 1, 255}.
    """
    foreground = attention > high
    few = foreground.flatten(1).sum(1) < MIN_FOREGROUND_PIXELS
    peak = attention.flatten(1).amax(1).view(-1, 1, 1, 1)
    fallback = attention > FALLBACK_FRACTION * peak
    foreground = torch.where(few.view(-1, 1, 1, 1), fallback, foreground)
    mask = torch.full_like(attention, IGNORE)
    mask = mask.masked_fill(foreground, 1.0).masked_fill(attention < low, 0.0)
    if valid is not None:
        mask = mask.masked_fill(~valid.view(-1, 1, 1, 1), IGNORE)
    return mask


def masked_bce(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean binary cross-entropy over the pixels of the whole batch whose mask is not
    ``IGNORE`` (the reference's ``loss_attention``); 0 when every pixel is ignored (the
    reference's mean over nothing would be NaN).

    Args:
        logits: ``[B, 1, H, W]``.
        mask: ``[B, 1, H, W]`` from ``spg_mask``.
    """
    keep = mask != IGNORE
    target = torch.where(keep, mask, torch.zeros_like(mask))
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (losses * keep).sum() / keep.sum().clamp(min=1)


# Per backbone: (B1 tap, B2 tap, their channels, side-branch width), names under
# net.features.backbone. The reference taps B1 after its SPG_A1 stage and B2 after SPG_A2:
# VGG16 after pool4 (conv4 + the pool of its 14x14 config) and after conv5_3; ResNet after
# block 0 of layer3 and after layer3; Inception-v3 after Mixed_5d and after Mixed_6d (its
# code feeds SPG_B_2a the Mixed_6d output). Widths: the reference's 512 (VGG16, Inception)
# and 1024 = layer3's channels (ResNet50), here layer3's channels for every ResNet.
SPG_TAPS: dict[str, tuple[str, str, int, int, int]] = {
    "vgg16": ("23", "29", 512, 512, 512),
    "resnet18": ("layer3.0", "layer3", 256, 256, 256),
    "resnet34": ("layer3.0", "layer3", 256, 256, 256),
    "resnet50": ("layer3.0", "layer3", 1024, 1024, 1024),
    "resnet101": ("layer3.0", "layer3", 1024, 1024, 1024),
    "inception_v3": ("Mixed_5d", "Mixed_6d", 288, 768, 512),
}


def _up(maps: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
    nn.init.xavier_uniform_(conv.weight)  # the reference's init of its SPG layers
    nn.init.zeros_(conv.bias)
    return conv


class SPG(WSOLMethod):
    """SPG: the classifier's CAM of the true label (normalised, upsampled to the input size)
    is turned into a foreground / background / ignored mask that supervises a side branch B2
    (tapped at a middle stage); B2's own sigmoid map supervises B1 (an earlier stage), and
    their fused map supervises branch C on the CAM-layer features. All three branches are
    pixel-wise BCE on the non-ignored pixels; the loss is ``CE + L(B2) + L(B1) + L(C)``. The
    guidance shapes the backbone's features; the branches are not used at eval time. On a
    reference network (``camlab.models.reference``, built for ``spg``) the branches read the
    layers it names (``net.spg_taps``), as the reference's code does.

    Args:
        threshold_1h, threshold_1l: B2's mask from the CAM (reference 0.7 / 0.01).
        threshold_2h, threshold_2l: B1's mask from sigmoid(B2) (reference 0.5 / 0.05).
        threshold_3h, threshold_3l: C's mask from the fused map (reference 0.7 / 0.1).
    """

    name = "spg"

    def __init__(
        self, net: GAPNet, backbone: str, num_classes: int, threshold_1h: float = 0.7,
        threshold_1l: float = 0.01, threshold_2h: float = 0.5, threshold_2l: float = 0.05,
        threshold_3h: float = 0.7, threshold_3l: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__(net, backbone, num_classes)
        if not isinstance(net, ReferenceNet) and backbone not in SPG_TAPS:
            raise unsupported_backbone("spg", backbone, sorted(SPG_TAPS))
        self.thresholds = (
            (float(threshold_1h), float(threshold_1l)),
            (float(threshold_2h), float(threshold_2l)),
            (float(threshold_3h), float(threshold_3l)),
        )
        taps = net.spg_taps if isinstance(net, ReferenceNet) else SPG_TAPS[backbone]
        tap1, tap2, c1, c2, width = taps
        self.b1_stem = nn.Sequential(_conv(c1, width, 3), nn.ReLU(inplace=True))
        self.b2_stem = nn.Sequential(_conv(c2, width, 3), nn.ReLU(inplace=True))
        # One head for both B1 and B2 (the reference's SPG_B_shared).
        self.b_shared = nn.Sequential(
            _conv(width, width, 3), nn.ReLU(inplace=True), _conv(width, 1, 1)
        )
        dim = net.classifier.in_features
        self.branch_c = nn.Sequential(_conv(dim, 512, 3), nn.ReLU(inplace=True), _conv(512, 1, 1))
        self._capturing, self._taps = False, {}
        backbone_layers = net.features.backbone
        backbone_layers.get_submodule(tap1).register_forward_hook(self._tap_b1)
        backbone_layers.get_submodule(tap2).register_forward_hook(self._tap_b2)

    def _tap_b1(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._capturing:
            self._taps["b1"] = output

    def _tap_b2(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._capturing:
            self._taps["b2"] = output

    def branches(
        self, net: GAPNet, images: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One forward pass with the side branches.

        Returns:
            ``(logits [B, K], CAM-layer features [B, C, h, w], B1, B2, C logits)``, each
            branch ``[B, 1, h', w']`` at its own tap's resolution.
        """
        self._capturing, self._taps = True, {}
        try:
            logits, feats = net.forward_with_features(images)
            taps = self._taps
        finally:  # the hooks keep nothing outside this pass
            self._capturing, self._taps = False, {}
        b1 = self.b_shared(self.b1_stem(taps["b1"]))
        b2 = self.b_shared(self.b2_stem(taps["b2"]))
        return logits, feats, b1, b2, self.branch_c(feats)

    def attention_maps(
        self, cam: Tensor, b1: Tensor, b2: Tensor, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The guidance maps (detached), at ``size``: the reference's ``attention`` and
        ``fused_attention``.

        Args:
            cam: ``[B, 1, h, w]`` class map of the labels.
            b1, b2: branch logits ``[B, 1, *, *]``.
            size: ``(H, W)``.

        Returns:
            ``(attention [B, 1, H, W], valid [B] bool, fused [B, 1, H, W])``: the upsampled
            CAM min-max normalised (``valid`` False where it is constant) and the mean of the
            B branches' sigmoids.
        """
        attention, valid = minmax_with_validity(_up(cam.detach(), size))
        fused = (torch.sigmoid(_up(b1.detach(), size)) + torch.sigmoid(_up(b2.detach(), size))) / 2
        return attention, valid, fused

    def guidance_losses(
        self, cam: Tensor, b1: Tensor, b2: Tensor, c: Tensor, size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The three attention losses, every map bilinearly upsampled to ``size`` (the
        reference: 224 x 224, its input size).

        Args:
            cam: ``[B, 1, h, w]`` class map of the labels.
            b1, b2, c: branch logits ``[B, 1, *, *]``.
            size: ``(H, W)``.

        Returns:
            ``(L(B2 | CAM), L(B1 | sigmoid B2), L(C | fused))``.
        """
        (h1, l1), (h2, l2), (h3, l3) = self.thresholds
        b1_up, b2_up, c_up = _up(b1, size), _up(b2, size), _up(c, size)
        attention, valid, fused = self.attention_maps(cam, b1, b2, size)
        b2_prob = torch.sigmoid(b2_up.detach())
        return (
            masked_bce(b2_up, spg_mask(attention, h1, l1, valid)),
            masked_bce(b1_up, spg_mask(b2_prob, h2, l2)),
            masked_bce(c_up, spg_mask(fused, h3, l3)),
        )

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, feats, b1, b2, c = self.branches(net, images)
        cam = label_cam(net.classifier, feats, labels)
        loss_b2, loss_b1, loss_c = self.guidance_losses(cam, b1, b2, c, images.shape[-2:])
        return criterion(logits, labels) + loss_b2 + loss_b1 + loss_c, logits, feats

    def reference_key_map(self) -> KeyMap:
        return KeyMap({"b1_stem": "SPG_B_1a", "b2_stem": "SPG_B_2a", "b_shared": "SPG_B_shared",
                       "branch_c": "SPG_C"})  # fmt: skip

    def extra_repr(self) -> str:
        return f"thresholds={self.thresholds}"

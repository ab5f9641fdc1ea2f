"""Plain training (CAM) and what every WSOL method shares: the GAP network at eval time."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from camlab.cam.postprocess import minmax_normalize
from camlab.errors import CamlabError
from camlab.models.gap import GAPNet
from camlab.models.reference import KeyMap, ReferenceNet, network_type

# (logits [B, K], labels [B]) -> scalar loss: cross-entropy with the model's label smoothing.
Criterion = Callable[[Tensor, Tensor], Tensor]


class WSOLMethod(nn.Module):
    """CAM (Zhou et al., CVPR 2016): the GAP classifier trained with cross-entropy; the base
    class of the other methods.

    A method changes training only. ``training_loss`` replaces the plain forward and loss of a
    training step; validation, test and CAM extraction run ``GAPNet`` unchanged
    (``features -> GAP -> classifier``), so every method is scored by the same CAM. Extra
    layers a method trains (ACoL's second classifier, SPG's side branches) are submodules of
    the method, which is a submodule of the LightningModule: they are saved in its checkpoint
    and rebuilt from the method's name and plain-valued parameters when it is loaded.

    Args:
        net: the GAP network the method trains (hooks may be attached to its layers; it is not
            stored as a submodule, so its parameters are not duplicated in the state dict).
        backbone: the backbone's name (``camlab.models.BACKBONES``), for layer positions.
        num_classes: number of classes K.
    """

    name = "cam"

    def __init__(self, net: GAPNet, backbone: str, num_classes: int) -> None:
        super().__init__()
        if isinstance(net, ReferenceNet) and net.kind != network_type(self.name):
            raise CamlabError(
                f"method={self.name} trains the reference's '{network_type(self.name)}' "
                f"network, but this {net.arch} was built for '{net.kind}'. Build it with "
                f"build_reference_net({net.arch!r}, {self.name!r}, ...)."
            )

    def reference_key_map(self) -> KeyMap:
        """This method's layers (names under the method) -> the reference's names: none here;
        ACoL and SPG on a reference network name theirs."""
        return KeyMap({})

    # Whether ``evaluation_forward`` gives the method's own evaluation CAM (the reference's
    # ACoL): validation and evaluate.py then score that map as ``cam``.
    has_evaluation_cam = False

    def evaluation_forward(
        self, net: GAPNet, images: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One evaluation forward pass: ``(logits [B, K], CAM-layer features, the method's own
        CAM of ``labels`` [B, h, w] or None)``; None: the plain network's CAM applies."""
        logits, feats = net.forward_with_features(images)
        return logits, feats, None

    def training_loss(
        self, net: GAPNet, images: Tensor, labels: Tensor, criterion: Criterion
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One training forward pass.

        Args:
            net: the GAP network.
            images: ``[B, C, H, W]``.
            labels: ``[B]`` class indices.
            criterion: the classification loss.

        Returns:
            ``(loss, logits [B, K], CAM-layer features [B, C', h, w])``.
        """
        logits, feats = net.forward_with_features(images)
        return criterion(logits, labels), logits, feats


def unsupported_backbone(method: str, backbone: str, supported: list[str]) -> CamlabError:
    """The error for a method whose layer positions are only defined for some backbones."""
    return CamlabError(
        f"method={method} places its layers at positions chosen for {', '.join(supported)} "
        f"(the wsolevaluation reference's architectures); backbone '{backbone}' has none. Use "
        f"one of those backbones, or a method that works with any: cam, has, acol, cutmix."
    )


def label_cam(classifier: nn.Linear, features: Tensor, labels: Tensor) -> Tensor:
    """The class map of each image's label: the 1x1-conv form of the GAP classifier, whose
    spatial mean is that logit (what the reference's ACoL/SPG heads output).

    Args:
        classifier: the linear layer after GAP, weight ``[K, C]``.
        features: ``[B, C, h, w]``.
        labels: ``[B]``.

    Returns:
        ``[B, 1, h, w]``.
    """
    weight = classifier.weight[labels]
    bias = classifier.bias[labels] if classifier.bias is not None else 0.0
    cams = torch.einsum("bc,bchw->bhw", weight, features)
    return (cams + (bias.view(-1, 1, 1) if torch.is_tensor(bias) else bias))[:, None]


def minmax_with_validity(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-map min-max scaling to [0, 1] (``camlab.cam.minmax_normalize``), as the reference's
    ``normalize_tensor``, and which maps it could scale.

    Args:
        maps: ``[B, 1, h, w]``.

    Returns:
        ``(normalised maps [B, 1, h, w], valid [B] bool)``. A constant map (where the
        reference divides by zero and gets NaN, which every threshold test rejects) gives
        zeros and ``valid = False``, so callers can reproduce the reference's outcome.
    """
    flat = maps.flatten(1)
    valid = flat.amax(1) > flat.amin(1)
    return minmax_normalize(maps), valid

"""The wsolevaluation reference's networks as camlab ``GAPNet`` s, with where its methods sit."""

import copy
from typing import NamedTuple

from torch import nn

from camlab.errors import CamlabError
from camlab.models.gap import GAPNet
from camlab.models.reference.keys import KeyMap

ARCHS = ("vgg16", "resnet50", "inception_v3")
# The reference's network types (its ``architecture_type``); every method trains one of them.
NETWORK_TYPES = ("cam", "adl", "acol", "spg")
# config.get_architecture_type: HaS and CutMix change the images or labels, not the network.
_METHOD_NETWORK = {"cam": "cam", "has": "cam", "cutmix": "cam", "adl": "adl", "acol": "acol",
                   "spg": "spg"}  # fmt: skip


def network_type(method: str) -> str:
    """The reference network a WSOL method trains (``has`` and ``cutmix`` use ``cam``'s)."""
    if method not in _METHOD_NETWORK:
        raise CamlabError(
            f"Unknown method '{method}' for the reference networks. Valid choices: "
            f"{', '.join(_METHOD_NETWORK)}."
        )
    return _METHOD_NETWORK[method]


def conv_relu(cin: int, cout: int) -> list[nn.Module]:
    """A 3x3 convolution (padding 1, with bias) and its ReLU: the reference's new layers."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


class SpgTaps(NamedTuple):
    """Where SPG's side branches read the network (names under ``net.features.backbone``).

    Attributes:
        b1, b2: the layers whose outputs feed branches B1 and B2.
        b1_channels, b2_channels: their channels.
        width: channels of the B branches' convolutions.
    """

    b1: str
    b2: str
    b1_channels: int
    b2_channels: int
    width: int


def init_reference(module: nn.Module, mode: str, conv_heads: frozenset[str] = frozenset()) -> None:
    """The reference's ``initialize_weights`` over every submodule: convolutions ``he``
    (Kaiming normal, fan_out, ReLU) or ``xavier`` (Xavier uniform) with zero bias; BatchNorm
    weight 1, bias 0; linear layers normal(0, 0.01), zero bias, except those in
    ``conv_heads`` (the reference's 1x1 convolutions), which get the convolution rule (a
    ``[K, C]`` weight has the fans of a ``[K, C, 1, 1]`` kernel).
    """
    if mode not in ("he", "xavier"):
        raise ValueError(f"init mode must be 'he' or 'xavier', not {mode!r}")

    def conv_rule(weight: nn.Parameter) -> None:
        if mode == "he":
            nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(weight)

    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d) or (isinstance(layer, nn.Linear) and name in conv_heads):
            conv_rule(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


class ReferenceNet(GAPNet):
    """One of the reference's networks as a ``GAPNet``: ``features.backbone`` holds the
    torchvision layers it keeps (with its strides and pools), ``features.neck`` the new
    convolutions before its classifier, ``classifier`` the classifier (its 1x1 convolution
    after GAP, as a ``Linear`` before GAP). Method layers are not here: the methods attach
    them where these attributes say, as they do on torchvision networks.

    Args:
        arch: one of ``ARCHS``.
        kind: one of ``NETWORK_TYPES``.
        large_feature_map: 28x28 CAMs at 224 px instead of 14x14.
        backbone, neck, feature_dim, num_classes: as ``GAPNet``.
        init_mode: ``he`` or ``xavier``, the reference's choice for this network.
        key_map: camlab module names -> the reference's (relative to this module).
        adl_positions: modules (names under ``features``) whose outputs pass through ADL.
        spg_taps: where SPG's B1 and B2 branches read the backbone.
    """

    def __init__(
        self, arch: str, kind: str, large_feature_map: bool, backbone: nn.Module,
        neck: nn.Module | None, feature_dim: int, num_classes: int, init_mode: str,
        key_map: KeyMap, adl_positions: tuple[str, ...] = (), spg_taps: SpgTaps | None = None,
    ) -> None:  # fmt: skip
        super().__init__(backbone, feature_dim, num_classes, neck)
        self.arch, self.kind, self.large_feature_map = arch, kind, large_feature_map
        self.init_mode, self.key_map = init_mode, key_map
        self.adl_positions, self.spg_taps = adl_positions, spg_taps
        init_reference(self, init_mode, key_map.conv_heads)

    def new_head(self) -> tuple[nn.Module, nn.Linear]:
        """A freshly initialised copy of ``(features.neck, classifier)``: ACoL's branch B
        repeats branch A's head (the reference's ``classifier_B``)."""
        neck, classifier = copy.deepcopy(self.features.neck), copy.deepcopy(self.classifier)
        init_reference(neck, self.init_mode)
        is_conv = "classifier" in self.key_map.conv_heads
        init_reference(classifier, self.init_mode, frozenset([""] if is_conv else []))
        return neck, classifier

    def extra_repr(self) -> str:
        return f"arch={self.arch}, kind={self.kind}, large_feature_map={self.large_feature_map}"

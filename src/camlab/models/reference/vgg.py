"""The reference's VGG16 networks (``wsol/vgg.py``): torchvision's 13 convolutions with its
pools moved, no fully connected layers, and each method's head."""

from torch import nn

from camlab.models.reference.keys import KeyMap
from camlab.models.reference.net import ReferenceNet, SpgTaps, conv_relu

# Pools: "M" 2x2 / 2 (torchvision's), "M1" 3x3 / 2 pad 1, "M2" 3x3 / 1 pad 1 (keeps the size),
# "I" none (an identity keeps torchvision's indices). The 4th pool halves 28x28 to 14x14.
_POOLS = {
    "M": lambda: nn.MaxPool2d(2, 2),
    "M1": lambda: nn.MaxPool2d(3, 2, 1),
    "M2": lambda: nn.MaxPool2d(3, 1, 1),
    "I": nn.Identity,
}
_BLOCKS = ([64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3)
# VGG-SPG: torchvision's conv4 / conv5 (their indices in ``features``) are SPG_A_1 / SPG_A_2.
SPG_CONV_NAMES = {17: "SPG_A_1.0", 19: "SPG_A_1.2", 21: "SPG_A_1.4", 24: "SPG_A_2.0",
                  26: "SPG_A_2.2", 28: "SPG_A_2.4"}  # fmt: skip


def _tokens(kind: str, large_feature_map: bool) -> list[int | str]:
    """The reference's layer list: conv widths and pool tokens, in order."""
    if kind == "acol":  # 3x3 pools; the 4th keeps 28x28 with large_feature_map; one more at the end
        pools = ["M1", "M1", "M1", "M2" if large_feature_map else "M1", "M2"]
    elif kind == "spg":  # conv4 and conv5 are its SPG_A_1 / SPG_A_2; a 3x3 pool between them
        pools = ["M", "M", "M", "I" if large_feature_map else "M1", None]
    else:  # cam, adl: no 5th pool; no 4th with large_feature_map (later indices shift by 1)
        pools = ["M", "M", "M", None if large_feature_map else "M", None]
    tokens: list[int | str] = []
    for widths, pool in zip(_BLOCKS, pools, strict=True):
        tokens += widths + ([pool] if pool else [])
    return tokens


def _layers(tokens: list[int | str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for token in tokens:
        if isinstance(token, str):
            layers.append(_POOLS[token]())
        else:
            layers += [nn.Conv2d(channels, token, 3, padding=1), nn.ReLU(inplace=True)]
            channels = token
    return nn.Sequential(*layers)


def _conv_indices(layers: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]


def _adl_positions(layers: nn.Sequential) -> tuple[str, ...]:
    """After pool3, after conv4_3's ReLU (before pool4) and after conv5_3's ReLU."""
    convs = _conv_indices(layers)
    return tuple(f"backbone.{i}" for i in (convs[6] + 2, convs[9] + 1, convs[12] + 1))


def _adl_renames(layers: nn.Sequential, positions: tuple[str, ...]) -> dict[str, str]:
    """The reference inserts its ADL layers into ``features``: each conv's index grows by the
    number of ADL layers before it."""
    after = [int(p.rsplit(".", 1)[1]) for p in positions]
    return {
        f"features.backbone.{i}": f"features.{i + sum(a < i for a in after)}"
        for i in _conv_indices(layers)
    }


def build_vgg16(kind: str, large_feature_map: bool, num_classes: int) -> ReferenceNet:
    """The reference's VGG16 for network type ``kind`` (14x14 or 28x28 CAMs at 224 px).

    - cam / adl (``VggCam``): conv1_1..conv5_3 (no pool5), then conv6 (3x3, 1024) + ReLU, GAP,
      fc. ADL sits after pool3, conv4_3 and conv5_3 (method hooks; eval: the identity).
    - acol (``VggAcol``): 3x3 pools, a 3x3 / 1 max pool and a 3x3 / 1 average pool after
      conv5_3 (the features both branches read), then classifier_A: conv 1024, conv 1024,
      1x1 conv to the classes (here the Linear after GAP).
    - spg (``VggSpg``): conv4 = SPG_A_1, a 3x3 / 2 pool (14x14 only), conv5 = SPG_A_2, two new
      512 convs = SPG_A_3, 1x1 conv SPG_A_4; B1 reads the pool, B2 conv5_3, C SPG_A_3.
    """
    layers = _layers(_tokens(kind, large_feature_map))
    renames = {"features.backbone": "features"}
    adl, taps, heads = (), None, frozenset(["classifier"])
    if kind in ("cam", "adl"):
        neck = nn.Sequential(*conv_relu(512, 1024))
        renames |= {"features.neck.0": "conv6", "classifier": "fc"}
        heads, dim, init = frozenset(), 1024, "he"
        if kind == "adl":
            adl = _adl_positions(layers)
            renames |= _adl_renames(layers, adl)
    elif kind == "acol":
        layers.append(nn.AvgPool2d(3, 1, 1))  # the reference's smoothing before both branches
        neck = nn.Sequential(*conv_relu(512, 1024), *conv_relu(1024, 1024))
        renames |= {"features.neck.0": "classifier_A.0", "features.neck.2": "classifier_A.2",
                    "classifier": "classifier_A.4"}  # fmt: skip
        dim, init = 1024, "xavier"
    else:  # spg: torchvision's indices, so conv4 is 17/19/21, its pool 23, conv5 24/26/28
        convs = _conv_indices(layers)
        renames |= {f"features.backbone.{i}": name for i, name in SPG_CONV_NAMES.items()}
        neck = nn.Sequential(*conv_relu(512, 512), *conv_relu(512, 512))
        renames |= {"features.neck": "SPG_A_3", "classifier": "SPG_A_4"}
        taps = SpgTaps(str(convs[9] + 2), str(len(layers) - 1), 512, 512, 512)
        dim, init = 512, "xavier"
    key_map = KeyMap(renames, heads)
    return ReferenceNet("vgg16", kind, large_feature_map, layers, neck, dim, num_classes, init,
                        key_map, adl, taps)  # fmt: skip

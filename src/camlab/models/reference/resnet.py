"""The reference's ResNet50 networks (``wsol/resnet.py``): torchvision's layout with layer4 at
stride 1 and layer3 at stride 1 too for 28x28 CAMs."""

from collections import OrderedDict

import torchvision
from torch import nn

from camlab.models.reference.keys import KeyMap
from camlab.models.reference.net import ReferenceNet, SpgTaps, conv_relu

# The reference's _ADL_POSITION: after block 0 of layer3, after blocks 0 and 2 (the last) of
# layer4.
ADL_BLOCKS = {"layer3": (0,), "layer4": (0, 2)}


def _stride_one(stage: nn.Sequential) -> None:
    """Drops the stride of a torchvision stage (on its first block's 3x3 conv and shortcut)."""
    stage[0].conv2.stride = (1, 1)
    stage[0].downsample[0].stride = (1, 1)


def adl_block_names() -> dict[str, str]:
    """torchvision's block names -> the reference's for ADL: it inserts its ADL layers into
    layer3 / layer4, so each later block's index grows by the number of ADL layers before it
    (layer3.1 -> layer3.2, ..., layer4.1 -> layer4.2, layer4.2 -> layer4.3)."""
    names = {}
    for stage, after in ADL_BLOCKS.items():
        for block in range(1, 6 if stage == "layer3" else 3):
            shift = sum(a < block for a in after)
            if shift:
                names[f"{stage}.{block}"] = f"{stage}.{block + shift}"
    return names


def spg_block_names() -> dict[str, str]:
    """torchvision's layer3 blocks -> the reference's SPG names: block 0 (with the stride) is
    SPG_A1, blocks 1-5 are SPG_A2."""
    return {"layer3.0": "SPG_A1.0"} | {f"layer3.{b}": f"SPG_A2.{b - 1}" for b in range(1, 6)}


def build_resnet50(kind: str, large_feature_map: bool, num_classes: int) -> ReferenceNet:
    """The reference's ResNet50 for network type ``kind`` (14x14 or 28x28 CAMs at 224 px).

    - cam / adl (``ResNetCam`` / ``ResNetAdl``): layer4's output, GAP, fc. ADL after
      layer3.0, layer4.0 and layer4.2 (method hooks).
    - acol (``ResNetAcol``): classifier_A (conv 1024, conv 1024, 1x1 conv to the classes)
      on layer4's output; no smoothing pool.
    - spg (``ResNetSpg``): layer3 is its SPG_A1 (block 0) and SPG_A2 (blocks 1-5); SPG_A4 a
      1x1 conv on layer4; B1 reads block 0 of layer3, B2 layer3, C layer4.
    """
    tv = torchvision.models.resnet50(weights=None)
    if large_feature_map:
        _stride_one(tv.layer3)
    _stride_one(tv.layer4)
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    backbone = nn.Sequential(OrderedDict((n, getattr(tv, n)) for n in names))
    renames = {"features.backbone": "", "classifier": "fc"}
    neck, dim, heads, adl, taps = None, 2048, frozenset(), (), None
    init = {"cam": "xavier", "adl": "xavier", "acol": "he", "spg": "xavier"}[kind]
    if kind == "adl":
        adl = tuple(f"backbone.{s}.{b}" for s, after in ADL_BLOCKS.items() for b in after)
        renames |= {f"features.backbone.{k}": v for k, v in adl_block_names().items()}
    elif kind == "acol":
        neck = nn.Sequential(*conv_relu(2048, 1024), *conv_relu(1024, 1024))
        renames |= {"features.neck.0": "classifier_A.0", "features.neck.2": "classifier_A.2",
                    "classifier": "classifier_A.4"}  # fmt: skip
        dim, heads = 1024, frozenset(["classifier"])
    elif kind == "spg":
        renames |= {f"features.backbone.{k}": v for k, v in spg_block_names().items()}
        renames["classifier"] = "SPG_A4"
        heads = frozenset(["classifier"])
        taps = SpgTaps("layer3.0", "layer3", 1024, 1024, 1024)
    return ReferenceNet("resnet50", kind, large_feature_map, backbone, neck, dim, num_classes,
                        init, KeyMap(renames, heads), adl, taps)  # fmt: skip

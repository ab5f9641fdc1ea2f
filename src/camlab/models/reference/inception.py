"""The reference's Inception-v3 networks (``wsol/inception.py``): torchvision's blocks up to
Mixed_6e with a padded stem, Mixed_6a at stride 1, and new convolutions as the CAM layer."""

from collections import OrderedDict

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.inception import InceptionB

from camlab.models.reference.keys import KeyMap
from camlab.models.reference.net import ReferenceNet, SpgTaps, conv_relu


class InceptionBStride1(InceptionB):
    """torchvision's InceptionB (Mixed_6a) without its downsampling, as the reference builds
    it (kernel 3, stride 1, padding 1 on both 3x3 branches and on the max-pool branch):
    parameters and names unchanged, so the pretrained weights load as they are."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch3x3(x), dbl, F.max_pool2d(x, kernel_size=3, stride=1, padding=1)]


def _backbone(kind: str, large_feature_map: bool) -> nn.Sequential:
    """Stem to Mixed_6e; 28x28 after Mixed_5d at 224 px, pooled to 14x14 unless
    ``large_feature_map``; the reference's dropout after Mixed_6e for cam and spg."""
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    tv.Conv2d_1a_3x3.conv.padding = (1, 1)  # torchvision: 0
    layers = [(n, getattr(tv, n)) for n in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")]
    # Padded, ceil-mode stem pools (torchvision: unpadded, floor): 110 -> 56 -> 54 -> 28.
    layers += [("maxpool1", nn.MaxPool2d(3, 2, 1, ceil_mode=True))]
    layers += [(n, getattr(tv, n)) for n in ("Conv2d_3b_1x1", "Conv2d_4a_3x3")]
    layers += [("maxpool2", nn.MaxPool2d(3, 2, 1, ceil_mode=True))]
    layers += [(n, getattr(tv, n)) for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d")]
    # An identity keeps the name (SPG's B1 tap) when there is no pool.
    pool = nn.Identity() if large_feature_map else nn.MaxPool2d(3, 2, 0, ceil_mode=True)
    layers += [("pool_5d", pool), ("Mixed_6a", InceptionBStride1(288))]
    layers += [(n, getattr(tv, n)) for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")]
    if kind in ("cam", "spg"):  # the reference's F.dropout(0.5) in training
        layers += [("dropout", nn.Dropout(0.5))]
    return nn.Sequential(OrderedDict(layers))


def build_inception_v3(kind: str, large_feature_map: bool, num_classes: int) -> ReferenceNet:
    """The reference's Inception-v3 for network type ``kind`` (14x14 or 28x28 CAMs at 224 px);
    its own init (xavier) everywhere, no ``transform_input``.

    - cam / spg (``InceptionCam`` / ``InceptionSpg``): after Mixed_6e, SPG_A3_1b and SPG_A3_2b
      (3x3 convs to 1024, each with ReLU and dropout 0.5), SPG_A4 a 1x1 conv to the classes.
      SPG's B1 reads Mixed_5d (after the pool), B2 Mixed_6d, C SPG_A3_2b.
    - adl (``InceptionAdl``): the same head without dropout; ADL after Mixed_5d, Mixed_6e and
      SPG_A3_2b (method hooks).
    - acol (``InceptionAcol``): classifier_A (conv 1024, conv 1024, 1x1 conv) on Mixed_6e.
    """
    backbone = _backbone(kind, large_feature_map)
    renames = {"features.backbone": ""}
    adl, taps = (), None
    if kind == "acol":
        neck = nn.Sequential(*conv_relu(768, 1024), *conv_relu(1024, 1024))
        renames |= {"features.neck.0": "classifier_A.0", "features.neck.2": "classifier_A.2",
                    "classifier": "classifier_A.4"}  # fmt: skip
    elif kind == "adl":
        neck = nn.Sequential(*conv_relu(768, 1024), *conv_relu(1024, 1024))
        renames |= {"features.neck.0": "SPG_A3_1b.0", "features.neck.2": "SPG_A3_2b.0",
                    "classifier": "SPG_A4"}  # fmt: skip
        adl = ("backbone.Mixed_5d", "backbone.Mixed_6e", "neck")
    else:
        # The reference's F.dropout(0.5) after each ReLU, in training.
        neck = nn.Sequential(
            *conv_relu(768, 1024), nn.Dropout(0.5), *conv_relu(1024, 1024), nn.Dropout(0.5)
        )
        renames |= {"features.neck.0": "SPG_A3_1b.0", "features.neck.3": "SPG_A3_2b.0",
                    "classifier": "SPG_A4"}  # fmt: skip
        if kind == "spg":
            taps = SpgTaps("pool_5d", "Mixed_6d", 288, 768, 512)
    key_map = KeyMap(renames, frozenset(["classifier"]))
    return ReferenceNet("inception_v3", kind, large_feature_map, backbone, neck, 1024,
                        num_classes, "xavier", key_map, adl, taps)  # fmt: skip

"""Building a reference network by name, optionally from torchvision's ImageNet weights."""

from collections.abc import Callable

from camlab.errors import CamlabError
from camlab.models.backbones import torchvision_model
from camlab.models.reference.inception import build_inception_v3
from camlab.models.reference.net import ARCHS, ReferenceNet, network_type
from camlab.models.reference.pretrained import load_torchvision_weights
from camlab.models.reference.resnet import build_resnet50
from camlab.models.reference.vgg import build_vgg16

_BUILDERS: dict[str, Callable[[str, bool, int], ReferenceNet]] = {
    "vgg16": build_vgg16,
    "resnet50": build_resnet50,
    "inception_v3": build_inception_v3,
}


def build_reference_net(
    arch: str, method: str, num_classes: int, large_feature_map: bool = False,
    pretrained: bool = False, dataset_name: str = "CUB",
) -> ReferenceNet:  # fmt: skip
    """The wsolevaluation reference's network for a WSOL method.

    Args:
        arch: one of ``ARCHS``.
        method: a WSOL method (``cam``, ``has``, ``cutmix``, ``adl``, ``acol``, ``spg``); HaS
            and CutMix train the ``cam`` network.
        num_classes: classes K.
        large_feature_map: 28x28 CAMs at 224 px instead of 14x14.
        pretrained: torchvision's ImageNet weights in the layers the reference keeps.
        dataset_name: the reference's data set name; ``ILSVRC`` keeps ResNet50's ImageNet fc
            for cam / adl.
    """
    if arch not in _BUILDERS:
        raise CamlabError(f"Unknown reference arch '{arch}'. Valid choices: {', '.join(ARCHS)}.")
    net = _BUILDERS[arch](network_type(method), large_feature_map, num_classes)
    if pretrained:
        state = torchvision_model(arch, pretrained=True).state_dict()
        load_torchvision_weights(net, state, dataset_name)
    return net

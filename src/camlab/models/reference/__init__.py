"""The networks of the wsolevaluation reference (clovaai/wsolevaluation, Choe et al., CVPR
2020): VGG16, ResNet50 and Inception-v3 for its cam, adl, acol and spg network types, with
``large_feature_map``, as camlab ``GAPNet`` s; the renaming of its state dicts and of
torchvision's ImageNet weights; its learning-rate groups."""

from camlab.models.reference.build import build_reference_net
from camlab.models.reference.keys import KeyMap
from camlab.models.reference.lr import learns_fast, param_groups
from camlab.models.reference.net import (
    ARCHS,
    NETWORK_TYPES,
    ReferenceNet,
    SpgTaps,
    init_reference,
    network_type,
)
from camlab.models.reference.pretrained import (
    keeps_imagenet_fc,
    load_torchvision_weights,
    torchvision_sources,
)

__all__ = ["ARCHS", "KeyMap", "NETWORK_TYPES", "ReferenceNet", "SpgTaps", "build_reference_net",
           "init_reference", "keeps_imagenet_fc", "learns_fast", "load_torchvision_weights",
           "network_type", "param_groups", "torchvision_sources"]  # fmt: skip

"""One entry for every network family a ``GAPClassifier`` can hold (``model.arch``)."""

from camlab.models.backbones import build_gapnet
from camlab.models.gap import GAPNet
from camlab.models.reference import build_reference_net
from camlab.models.timm_backbones import build_timm_gapnet


def build_network(
    arch: str, backbone: str, num_classes: int, in_channels: int = 3, pretrained: bool = False,
    hires_cam: bool = False, large_feature_map: bool = False, image_size: int | None = None,
    method: str = "cam",
) -> GAPNet:  # fmt: skip
    """The ``arch`` network (``torchvision``, ``reference`` or ``timm``) of ``backbone``.

    ``method`` places the reference's WSOL layers (its other archs train them on the plain
    network). The reference's ImageNet recipe keeps ResNet50's pretrained fc, so 1,000 classes
    build its ILSVRC variant.
    """
    if arch == "reference":
        dataset = "ILSVRC" if num_classes == 1000 else "CUB"
        return build_reference_net(
            backbone, method, num_classes, large_feature_map, pretrained, dataset
        )
    if arch == "timm":
        return build_timm_gapnet(backbone, num_classes, in_channels, pretrained, image_size)
    return build_gapnet(backbone, num_classes, in_channels, pretrained, hires_cam)

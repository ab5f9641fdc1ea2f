"""The reference's two learning rates (``main.py Trainer._set_optimizer``)."""

from collections.abc import Iterable

from torch import nn

from camlab.models.reference.keys import KeyMap

# Substrings of the reference's parameter names (its _FEATURE_PARAM_LAYER_PATTERNS).
FEATURE_PATTERNS = {
    "vgg16": ("features.",),
    "resnet50": ("layer4.", "fc."),
    "inception_v3": ("Mixed", "Conv2d_1", "Conv2d_2", "Conv2d_3", "Conv2d_4"),
}
CLASSIFIER_RATIO = 10.0  # the reference's lr_classifier_ratio default


def learns_fast(arch: str, reference_key: str) -> bool:
    """Whether a parameter, by its reference name, is in the ``lr * ratio`` group.

    VGG16 and Inception-v3: a name with a pattern learns at 1x, any other fast, so VGG-SPG's
    pretrained conv4/conv5 (named SPG_A_1/SPG_A_2) learn fast. ResNet50 is the other way round:
    layer4 and fc learn fast and everything else, the new ACoL and SPG layers included, at 1x.
    """
    if arch not in FEATURE_PATTERNS:
        raise ValueError(f"Unknown arch {arch!r}. Valid choices: {', '.join(FEATURE_PATTERNS)}.")
    matched = any(pattern in reference_key for pattern in FEATURE_PATTERNS[arch])
    return matched if arch == "resnet50" else not matched


def param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], key_map: KeyMap, arch: str,
    lr: float, ratio: float = CLASSIFIER_RATIO,
) -> list[dict]:  # fmt: skip
    """The reference's optimizer groups: ``lr`` and ``lr * ratio``.

    Args:
        named_parameters: camlab names and parameters (e.g. ``module.named_parameters()``).
        key_map: camlab names -> the reference's, for the same module.
        arch: the reference architecture.
        lr: the base learning rate.
        ratio: the reference's ``lr_classifier_ratio``.

    Returns:
        ``[{"name": "backbone", "params", "lr", "lr_mult": 1}, {"name": "head", "params",
        "lr", "lr_mult": ratio}]``; a group without parameters is left out.
    """
    groups = [
        {"name": name, "params": [], "lr": lr * mult, "lr_mult": mult}
        for name, mult in (("backbone", 1.0), ("head", float(ratio)))
    ]
    for name, param in named_parameters:
        groups[learns_fast(arch, key_map.to_reference(name))]["params"].append(param)
    return [g for g in groups if g["params"]]

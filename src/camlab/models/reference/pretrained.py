"""torchvision's ImageNet weights in the reference's layout, renamed as its
``load_pretrained_model`` renames them (``wsol/{vgg,resnet,inception}.py``)."""

from collections.abc import Iterable, Mapping

from torch import Tensor

from camlab.errors import CamlabError
from camlab.models.reference.net import ReferenceNet
from camlab.models.reference.resnet import adl_block_names, spg_block_names
from camlab.models.reference.vgg import SPG_CONV_NAMES

_VGG_SPG = {f"features.{index}": name for index, name in SPG_CONV_NAMES.items()}
# Inception: what the reference leaves out of its network.
_INCEPTION_DROPPED = ("Mixed_7", "AuxLogits", "fc.")


def keeps_imagenet_fc(arch: str, kind: str, dataset_name: str) -> bool:
    """The reference keeps torchvision's 1000-class ``fc`` (and loads strictly) only for
    ResNet50 cam / adl on ILSVRC; everywhere else the pretrained classifier is dropped."""
    return arch == "resnet50" and kind in ("cam", "adl") and dataset_name == "ILSVRC"


def _rename_prefix(key: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    return key


def _vgg(kind: str, tv_keys: list[str], model_keys: Iterable[str]) -> dict[str, str]:
    renamed = {
        _rename_prefix(k, _VGG_SPG if kind == "spg" else {}): k
        for k in tv_keys
        if "classifier." not in k
    }

    def indices(keys: Iterable[str]) -> list[int]:
        return sorted({int(k.split(".")[1]) for k in keys if k.startswith("features.")})

    # Positional re-indexing, last conv first: survives removed pools and inserted ADL layers.
    pairs = dict(zip(reversed(indices(renamed)), reversed(indices(model_keys)), strict=False))
    out = {}
    for ref, tv in renamed.items():
        if ref.startswith("features."):
            _, index, rest = ref.split(".", 2)
            ref = f"features.{pairs[int(index)]}.{rest}"
        out[ref] = tv
    return out


def _resnet(kind: str, tv_keys: list[str], keep_fc: bool) -> dict[str, str]:
    table: dict[str, str] = {}
    if kind == "adl":
        table = adl_block_names()
    elif kind == "spg":
        table = spg_block_names()
    return {_rename_prefix(k, table): k for k in tv_keys if keep_fc or "fc" not in k}


def torchvision_sources(
    net: ReferenceNet, tv_keys: Iterable[str], dataset_name: str = "CUB"
) -> dict[str, str]:
    """Which torchvision key fills each reference key of ``net`` when the reference loads
    ImageNet weights.

    Args:
        net: a reference network.
        tv_keys: the keys of torchvision's state dict for ``net.arch`` (Inception's with
            ``AuxLogits`` or without).
        dataset_name: the reference's data set name (``ILSVRC`` keeps ResNet's fc for cam/adl).

    Returns:
        reference key -> torchvision key, for every key that loads.
    """
    tv_keys = list(tv_keys)
    if net.arch == "vgg16":
        model_keys = [net.key_map.to_reference(k) for k in net.state_dict()]
        return _vgg(net.kind, tv_keys, model_keys)
    if net.arch == "inception_v3":
        return {k: k for k in tv_keys if not any(d in k for d in _INCEPTION_DROPPED)}
    return _resnet(net.kind, tv_keys, keeps_imagenet_fc(net.arch, net.kind, dataset_name))


def load_torchvision_weights(
    net: ReferenceNet, tv_state: Mapping[str, Tensor], dataset_name: str = "CUB"
) -> dict[str, str]:
    """Loads torchvision's ImageNet state dict into ``net`` as the reference does; the layers
    the reference adds keep their initialisation.

    Args:
        net: a reference network.
        tv_state: torchvision's state dict for ``net.arch``.
        dataset_name: ``ILSVRC`` keeps ResNet50's 1000-class fc for cam/adl (the network must
            then have 1000 classes).

    Returns:
        camlab key -> the torchvision key it was loaded from.

    Raises:
        CamlabError: ResNet50 cam/adl on ILSVRC with a classifier of another size.
    """
    sources = torchvision_sources(net, tv_state.keys(), dataset_name)
    own = net.state_dict()
    keep_fc = keeps_imagenet_fc(net.arch, net.kind, dataset_name)
    if keep_fc and tv_state["fc.weight"].shape != own["classifier.weight"].shape:
        raise CamlabError(
            f"The reference keeps ImageNet's pretrained fc for resnet50 {net.kind} on ILSVRC, "
            f"which needs num_classes={tv_state['fc.weight'].shape[0]}, not "
            f"{own['classifier.weight'].shape[0]}. Use the ILSVRC classes, or another "
            f"dataset_name (the fc then starts new)."
        )
    ref_state = {ref: tv_state[tv] for ref, tv in sources.items()}
    shapes = {k: tuple(v.shape) for k, v in own.items()}
    ours = net.key_map.from_reference_dict(ref_state, shapes)
    result = net.load_state_dict(ours, strict=False)
    if result.unexpected_keys or (keep_fc and result.missing_keys):
        raise RuntimeError(
            f"torchvision weights do not fit the reference {net.arch} {net.kind}: unexpected "
            f"{result.unexpected_keys}, missing {result.missing_keys}"
        )
    return {net.key_map.from_reference(ref): tv for ref, tv in sources.items()}

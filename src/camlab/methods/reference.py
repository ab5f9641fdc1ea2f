"""A reference network with its method, in the reference's state-dict names: loading and
exporting its weights, and its learning-rate groups.

camlab keeps a method's own layers (ACoL's branch B, SPG's side branches) in the method, beside
the network; the reference keeps them in one model. The names here are those of a module with
both as children, ``net`` and ``wsol_method`` (as in ``GAPClassifier``).
"""

from collections.abc import Mapping

from torch import Tensor, nn

from camlab.methods.base import WSOLMethod
from camlab.models.reference import KeyMap, ReferenceNet, param_groups

NET, METHOD = "net", "wsol_method"


def reference_key_map(net: ReferenceNet, method: WSOLMethod) -> KeyMap:
    """``net.*`` and ``wsol_method.*`` names -> the reference model's names."""
    return net.key_map.prefixed(NET) | method.reference_key_map().prefixed(METHOD)


def _both(net: ReferenceNet, method: WSOLMethod) -> nn.Module:
    return nn.ModuleDict({NET: net, METHOD: method})


def reference_state_dict(net: ReferenceNet, method: WSOLMethod) -> dict[str, Tensor]:
    """The weights of ``net`` and ``method`` as the reference's state dict (its names and
    shapes; ``num_batches_tracked`` included, as the reference's own state dict has them)."""
    return reference_key_map(net, method).to_reference_dict(_both(net, method).state_dict())


def load_reference_state_dict(
    net: ReferenceNet, method: WSOLMethod, state: Mapping[str, Tensor], strict: bool = True
) -> None:
    """Loads a state dict in the reference's names into ``net`` and ``method``.

    Args:
        net: the reference network (built for the reference model's type and size).
        method: the method training it.
        state: the reference model's state dict.
        strict: every key must match, as ``nn.Module.load_state_dict``.
    """
    both = _both(net, method)
    shapes = {k: tuple(v.shape) for k, v in both.state_dict().items()}
    both.load_state_dict(reference_key_map(net, method).from_reference_dict(state, shapes), strict)


def reference_param_groups(
    net: ReferenceNet, method: WSOLMethod, lr: float, ratio: float = 10.0
) -> list[dict]:
    """The reference's two optimizer groups (``lr`` and ``lr * ratio``) over the parameters of
    ``net`` and ``method`` (``camlab.models.reference.param_groups``)."""
    named = _both(net, method).named_parameters()
    return param_groups(named, reference_key_map(net, method), net.arch, lr, ratio)

"""WSOL training methods (the wsolevaluation reference's six): ``cam`` (plain training), ``has``,
``acol``, ``spg``, ``adl``, ``cutmix``. Each changes training only; evaluation and CAM
extraction use the plain GAP network. Chosen with the ``method`` config group."""

from typing import Any

from camlab.errors import CamlabError
from camlab.methods.acol import ACoL
from camlab.methods.adl import ADL, ADLMethod
from camlab.methods.base import WSOLMethod
from camlab.methods.cutmix import CutMix
from camlab.methods.has import HaS
from camlab.methods.spg import SPG
from camlab.models.gap import GAPNet

WSOL_METHODS: dict[str, type[WSOLMethod]] = {
    "cam": WSOLMethod,
    "has": HaS,
    "acol": ACoL,
    "spg": SPG,
    "adl": ADLMethod,
    "cutmix": CutMix,
}


def build_method(
    name: str, net: GAPNet, backbone: str, num_classes: int, **params: Any
) -> WSOLMethod:
    """Builds method ``name`` for ``net`` (it may attach forward hooks to the net's layers).

    Args:
        name: one of ``WSOL_METHODS``.
        net: the GAP network.
        backbone: its backbone's name.
        num_classes: K.
        **params: the method's hyper-parameters (plain values, as in configs/method/).
    """
    if name not in WSOL_METHODS:
        raise CamlabError(f"Unknown method '{name}'. Valid choices: {', '.join(WSOL_METHODS)}.")
    try:
        return WSOL_METHODS[name](net, backbone, num_classes, **params)
    except (TypeError, ValueError) as err:
        raise CamlabError(
            f"Invalid settings for method={name} {params}: {err}. See configs/method/{name}.yaml "
            f"for its parameters (override e.g. method.{next(iter(params), 'name')}=...)."
        ) from err


__all__ = ["ACoL", "ADL", "ADLMethod", "CutMix", "HaS", "WSOL_METHODS", "SPG", "WSOLMethod",
           "build_method"]  # fmt: skip

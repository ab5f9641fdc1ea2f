"""The CAM methods by name."""

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from camlab.cam import gradient
from camlab.cam.activation import cam_from_weights, eigencam
from camlab.cam.context import CamInputs
from camlab.cam.scorecam import scorecam
from camlab.errors import CamlabError


@dataclass(frozen=True)
class CamMethod:
    """A registered method: ``fn(CamInputs) -> [B, k, h, w]``.

    Attributes:
        needs_grads: captures the post-layer autograd graph (used unless the closed form applies).
        needs_head: needs a GAP + linear head after the target layer (CAM).
    """

    fn: Callable[[CamInputs], Tensor]
    needs_grads: bool = False
    needs_head: bool = False


def _gradient_method(formula: Callable[[Tensor, Tensor], Tensor]) -> CamMethod:
    return CamMethod(lambda inp: formula(inp.acts[:, None], inp.grads()), needs_grads=True)


def _cam(inp: CamInputs) -> Tensor:
    return cam_from_weights(inp.acts, inp.head.weight[inp.targets])


def _eigencam(inp: CamInputs) -> Tensor:
    # Class-agnostic: the same map for every target.
    return eigencam(inp.acts)[:, None].expand(-1, inp.targets.shape[1], -1, -1)


METHODS: dict[str, CamMethod] = {
    "cam": CamMethod(_cam, needs_head=True),
    "gradcam": _gradient_method(gradient.gradcam),
    "gradcam++": _gradient_method(gradient.gradcampp),
    "xgradcam": _gradient_method(gradient.xgradcam),
    "layercam": _gradient_method(gradient.layercam),
    "hirescam": _gradient_method(gradient.hirescam),
    "scorecam": CamMethod(scorecam),
    "eigencam": CamMethod(_eigencam),
}


def get_method(name: str) -> CamMethod:
    """Looks a method up by name (case-insensitive).

    Raises:
        CamlabError: unknown name, listing the registry.
    """
    method = METHODS.get(name.lower()) if isinstance(name, str) else None
    if method is None:
        raise CamlabError(f"Unknown CAM method {name!r}. Valid choices: {', '.join(METHODS)}.")
    return method

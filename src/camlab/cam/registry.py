"""The CAM methods by name."""

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from camlab.cam import gradient
from camlab.cam.ablation import ablation_weights
from camlab.cam.activation import cam_from_weights, eigencam
from camlab.cam.capture import Capture
from camlab.cam.context import CamInputs
from camlab.cam.fullgrad import fullgrad, fullgrad_capture, fullgrad_eigen
from camlab.cam.scorecam import iscam_weights, scorecam_weights, sscam_weights
from camlab.cam.smoothgrad import smoothgradcampp, smoothgradcampp_parts
from camlab.cam.smoothing import project_terms
from camlab.errors import CamlabError

Fn = Callable[[CamInputs], Tensor]


@dataclass(frozen=True)
class CamMethod:
    """A registered method: ``fn(CamInputs) -> [B, k, h, w]``.

    Attributes:
        needs_grads: captures the post-layer autograd graph (used unless the closed form applies).
        needs_head: needs a GAP + linear head after the target layer (CAM).
        eigen_fn: the map with ``eigen_smooth`` (``None``: not available).
        forward: a method's own capture ``(model, images) -> Capture`` instead of hooking the
            target layer (FullGrad; its maps are at input resolution).
        samples: defaults of ``num_samples`` / ``noise_std`` (``None``: not used).
    """

    fn: Fn
    needs_grads: bool = False
    needs_head: bool = False
    eigen_fn: Fn | None = None
    forward: Callable[[nn.Module, Tensor], Capture] | None = None
    samples: dict[str, float] = field(default_factory=dict)


def _weighted(weights: Fn, relu: bool = True, **kwargs: object) -> CamMethod:
    """A method whose map is ``sum_c w_c A_c`` (ReLU-ed unless ``relu=False``)."""

    def fn(inp: CamInputs) -> Tensor:
        maps = cam_from_weights(inp.acts, weights(inp))
        return maps.relu() if relu else maps

    def eigen(inp: CamInputs) -> Tensor:
        maps = project_terms(gradient.weighted_terms(weights(inp), inp.acts[:, None]))
        return maps.relu() if relu else maps

    return CamMethod(fn, eigen_fn=eigen, **kwargs)


def _grad_weighted(weights: Callable[[Tensor, Tensor], Tensor]) -> CamMethod:
    return _weighted(lambda inp: weights(inp.acts[:, None], inp.grads()), needs_grads=True)


def _grad_elementwise(terms: Callable[[Tensor, Tensor], Tensor], relu: bool) -> CamMethod:
    """A method whose map is ``sum_c P_c`` for element-wise ``P = terms(A, G)``."""

    def finish(maps: Tensor) -> Tensor:
        return maps.relu() if relu else maps

    def fn(inp: CamInputs) -> Tensor:
        return finish(terms(inp.acts[:, None], inp.grads()).sum(2))

    def eigen(inp: CamInputs) -> Tensor:
        return finish(project_terms(terms(inp.acts[:, None], inp.grads())))

    return CamMethod(fn, needs_grads=True, eigen_fn=eigen)


def _cam_weights(inp: CamInputs) -> Tensor:
    return inp.head.weight[inp.targets]


def _eigencam(inp: CamInputs) -> Tensor:
    # Class-agnostic: the same map for every target.
    return eigencam(inp.acts)[:, None].expand(-1, inp.targets.shape[1], -1, -1)


def _eigengradcam(inp: CamInputs) -> Tensor:
    return project_terms(gradient.hirescam_terms(inp.acts[:, None], inp.grads()))


def _smoothgradcampp_eigen(inp: CamInputs) -> Tensor:
    weights, acts = smoothgradcampp_parts(inp)
    return project_terms(gradient.weighted_terms(weights, acts[:, None])).relu()


CAM_METHODS: dict[str, CamMethod] = {
    "cam": _weighted(_cam_weights, relu=False, needs_head=True),
    "gradcam": _grad_weighted(gradient.gradcam_weights),
    "gradcam++": _grad_weighted(gradient.gradcampp_weights),
    "xgradcam": _grad_weighted(gradient.xgradcam_weights),
    "layercam": _grad_elementwise(gradient.layercam_terms, relu=True),
    "hirescam": _grad_elementwise(gradient.hirescam_terms, relu=False),
    "scorecam": _weighted(scorecam_weights),
    "eigencam": CamMethod(_eigencam, eigen_fn=_eigencam),
    "ablationcam": _weighted(ablation_weights),
    "eigengradcam": CamMethod(_eigengradcam, needs_grads=True, eigen_fn=_eigengradcam),
    "fullgrad": CamMethod(fullgrad, eigen_fn=fullgrad_eigen, forward=fullgrad_capture),
    "smoothgradcam++": CamMethod(
        smoothgradcampp,
        eigen_fn=_smoothgradcampp_eigen,
        samples={"num_samples": 4, "noise_std": 0.3},
    ),
    "sscam": _weighted(sscam_weights, samples={"num_samples": 35, "noise_std": 2.0}),
    "iscam": _weighted(iscam_weights, samples={"num_samples": 10}),
}


def get_method(name: str) -> CamMethod:
    """Looks a method up by name (case-insensitive).

    Raises:
        CamlabError: unknown name, listing the registry.
    """
    method = CAM_METHODS.get(name.lower()) if isinstance(name, str) else None
    if method is None:
        raise CamlabError(f"Unknown CAM method {name!r}. Valid choices: {', '.join(CAM_METHODS)}.")
    return method

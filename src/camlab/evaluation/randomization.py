"""Model-parameter randomisation of the sanity checks (Adebayo et al., NeurIPS 2018) on a copy.

The layers are randomised top down: the linear head after global average pooling first, then
the backbone's stages from the last to the first. For camlab's GAP classifiers a stage is a
parametrised child of the backbone (ResNet: ``layer4`` .. ``layer1``, ``bn1``, ``conv1``;
Inception: ``Mixed_7c`` .. ``Conv2d_1a_3x3``, the paper's blocks; VGG: each conv; DenseNet:
each dense block and transition), and a neck (VGG's extra conv) comes before the backbone.

A layer is re-initialised as the paper re-ran its variables' initialisers: every module in it
with parameters runs its own ``reset_parameters()`` (PyTorch's default init: Kaiming-uniform
convolutions and linear layers, norm layers at weight 1 and bias 0), drawn from a generator
seeded by ``seed`` and the layer's position; buffers (BatchNorm running statistics) are kept,
as the paper re-initialised trainable variables only. A parameter that no module resets (a
bare ``nn.Parameter``) is drawn from a truncated normal of std 0.02.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from camlab.cam import default_cam_layer, unwrap_model
from camlab.errors import CamlabError

MODES = ("cascading", "independent")
_WRAPPER_PARTS = ("backbone", "neck")  # GAPNet.features = Sequential(backbone, neck)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _stages(module: nn.Module, prefix: str) -> list[str]:
    """Parametrised children of ``module`` in forward order, descending through a module whose
    only parametrised child holds everything and splitting GAPNet's backbone / neck."""
    kids = [(f"{prefix}.{n}" if prefix else n, c) for n, c in module.named_children()]
    kids = [(n, c) for n, c in kids if _has_params(c)]
    if len(kids) == 1 and any(True for _ in kids[0][1].children()):
        return _stages(kids[0][1], kids[0][0])
    if kids and all(n.rsplit(".", 1)[-1] in _WRAPPER_PARTS for n, _ in kids):
        return [stage for n, c in kids for stage in _stages(c, n)]
    return [n for n, _ in kids] or ([prefix] if _has_params(module) else [])


def _linear_head(net: nn.Module) -> str | None:
    """Name of the linear layer after global pooling: a declared ``gap_classifier``, else the
    network's only ``nn.Linear``."""
    for module in net.modules():
        head = getattr(module, "gap_classifier", None)
        if isinstance(head, nn.Linear):
            return next(n for n, m in net.named_modules() if m is head)
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    return linears[0] if len(linears) == 1 else None


def randomization_layers(model: nn.Module) -> list[str]:
    """The layers the sanity check randomises, top down (module names in ``model``).

    Raises:
        CamlabError: no linear head after the CAM layer (name the layers: sanity.layers).
    """
    net = unwrap_model(model)
    head = _linear_head(net)
    if head is None:
        raise CamlabError(
            f"{type(net).__name__} has no single linear head after global pooling to randomise "
            "first; name the layers top down, e.g. sanity.layers=[fc,layer4,layer3]."
        )
    cam_layer = default_cam_layer(net)
    stages = _stages(net.get_submodule(cam_layer), cam_layer)
    return [head, *reversed(stages)]


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """``layers`` checked against ``model``: parametrised modules, none inside another.

    Raises:
        CamlabError: an unknown or parameter-free name, or a name inside another.
    """
    names = {n for n, _ in model.named_modules() if n}
    for name in layers:
        if name not in names or not _has_params(model.get_submodule(name)):
            shown = [n for n, m in model.named_modules() if n and _has_params(m)][:40]
            raise CamlabError(
                f"sanity.layers: {name!r} is not a module with parameters of "
                f"{type(model).__name__}. Candidates: {', '.join(shown)}."
            )
    for a in layers:
        for b in layers:
            if a != b and b.startswith(a + "."):
                raise CamlabError(f"sanity.layers: {b!r} lies inside {a!r}; list each once.")
    return list(layers)


def fresh_parameters(module: nn.Module, seed: int) -> dict[str, Tensor]:
    """Re-initialised copies of ``module``'s parameters (CPU), by name inside ``module``; the
    module itself is unchanged."""
    work = copy.deepcopy(module).cpu()
    reset: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in work.modules():
            own = list(sub.parameters(recurse=False))
            if own and callable(getattr(sub, "reset_parameters", None)):
                buffers = {n: b.clone() for n, b in sub.named_buffers(recurse=False)}
                sub.reset_parameters()  # BatchNorm's also resets its statistics: put them back
                for name, value in buffers.items():
                    getattr(sub, name).copy_(value)
                reset.update(id(p) for p in sub.parameters(recurse=False))
        with torch.no_grad():
            for p in work.parameters():
                if id(p) not in reset:
                    nn.init.trunc_normal_(p, std=0.02)
    return {name: p.detach().clone() for name, p in work.named_parameters()}


class RandomizedModels(nn.Module):
    """Randomised copies of ``model``, one at a time, on a deep copy (``model`` is read only,
    never changed): ``cascading()`` randomises the layers top down cumulatively,
    ``independent()`` one layer at a time. Layer ``k`` gets the same random values in both.

    A module, so the copy follows the evaluation to its device.

    Args:
        model: the trained classifier.
        layers: module names, top down (``randomization_layers``).
        seed: seed of layer 0's draw; layer ``k`` uses ``seed + k``.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        self.layers = list(layers)
        self.copy = copy.deepcopy(model).eval()
        self._original = [model]  # a list: not a submodule, so never saved or moved twice
        self.fresh = [
            fresh_parameters(model.get_submodule(name), seed + k)
            for k, name in enumerate(self.layers)
        ]

    def _load(self, k: int, random: bool) -> None:
        """Layer ``k`` of the copy set to its random values, or back to the trained ones."""
        target = self.copy.get_submodule(self.layers[k])
        source = dict(self._original[0].get_submodule(self.layers[k]).named_parameters())
        with torch.no_grad():
            for name, p in target.named_parameters():
                p.copy_(self.fresh[k][name] if random else source[name])

    def restore(self) -> None:
        """Every layer of the copy back to the trained values."""
        for k in range(len(self.layers)):
            self._load(k, random=False)

    def cascading(self) -> Iterator[tuple[str, nn.Module]]:
        """``(layer, copy)`` with that layer and all above it randomised; restored after."""
        try:
            for k, name in enumerate(self.layers):
                self._load(k, random=True)
                yield name, self.copy
        finally:
            self.restore()

    def independent(self) -> Iterator[tuple[str, nn.Module]]:
        """``(layer, copy)`` with only that layer randomised; restored after."""
        try:
            for k, name in enumerate(self.layers):
                self._load(k, random=True)
                yield name, self.copy
                self._load(k, random=False)
        finally:
            self.restore()

"""Finds the pieces CAM needs on any model: the unwrapped network, the target layer, the head.

Models of ours declare them (duck-typed protocol): ``cam_layer`` (dotted module name whose output
``[B, C, h, w]`` feeds global average pooling) and ``gap_classifier`` (the ``nn.Linear`` after the
pooling). Plain torchvision models get heuristics (see ``default_cam_layer``).
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from camlab.cam.tokens import transformer_cam_layer, transformer_head
from camlab.errors import CamlabError

_WRAPPERS = (DistributedDataParallel, DataParallel)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strips DDP / DataParallel / ``torch.compile`` wrappers.

    Calling the inner module directly keeps DDP's reducer and collectives out of CAM calls.
    """
    while True:
        if isinstance(model, _WRAPPERS):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def _has(module: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in module.modules())


def _is_global_pool(module: nn.Module) -> bool:
    size = getattr(module, "output_size", None)
    return isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and size in (1, (1, 1))


def _declaring(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first module (the model itself, or one it wraps) that declares ``cam_layer``."""
    for name, module in model.named_modules():
        if isinstance(getattr(module, "cam_layer", None), str):
            return (f"{name}." if name else ""), module
    return None


def default_cam_layer(model: nn.Module) -> str:
    """Name of the model's CAM layer.

    ``cam_layer`` when the model (or a module it wraps, e.g. a LightningModule's ``net``)
    declares it; for torchvision's ViT / Swin the layer ``camlab.cam.tokens`` names (last
    block's ``ln_1`` / ``norm``); otherwise the last top-level child that holds a conv and no
    global pooling (torchvision: ``layer4`` for ResNets, ``features`` for DenseNet, VGG,
    MobileNetV2, SqueezeNet, ``Mixed_7c`` for Inception). When a single child holds all the
    convs together with the classifier (a wrapper around a whole network), the search descends
    into it.

    Raises:
        CamlabError: no convolutional child found.
    """
    declared = _declaring(model)
    if declared is not None:
        return declared[0] + declared[1].cam_layer
    transformer = transformer_cam_layer(model)
    if transformer is not None:
        return transformer
    prefix, module = "", model
    while True:
        convs = [(n, c) for n, c in module.named_children() if _has(c, (nn.Conv2d,))]
        # A head pools globally at its top level (SqueezeNet's classifier); SE blocks pool deeper.
        stages = [(n, c) for n, c in convs if not any(map(_is_global_pool, [c, *c.children()]))]
        if len(convs) == 1 and any(True for _ in convs[0][1].children()):
            name, child = convs[0]
            others = [c for n, c in module.named_children() if n != name]
            whole = _has(child, (nn.Linear,)) or any(map(_is_global_pool, child.modules()))
            if whole and not any(_has(c, (nn.Linear,)) for c in others):
                prefix, module = f"{prefix}{name}.", child  # a wrapped whole network
                continue
        if not stages:
            raise CamlabError(
                f"Could not find a convolutional stage in {type(model).__name__}; pass "
                f"target_layer=<name>. Candidates: {', '.join(layer_names(model)[:40])}."
            )
        return prefix + stages[-1][0]


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of all submodules (the candidates for ``target_layer``)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, target_layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    """Returns ``(name, module)`` of the target layer (``None`` = the model's CAM layer).

    Raises:
        CamlabError: unknown name or module, listing the candidate layer names.
    """
    if isinstance(target_layer, nn.Module):
        for name, module in model.named_modules():
            if module is target_layer and name:
                return name, module
        raise CamlabError("target_layer is a module that is not part of the model.")
    name = default_cam_layer(model) if target_layer is None else target_layer
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        names = layer_names(model)
        shown = ", ".join(names[:60]) + (f", ... ({len(names)} in all)" if len(names) > 60 else "")
        raise CamlabError(
            f"No layer named '{name}' in {type(model).__name__}. Candidate layer names: {shown}."
        ) from None


@dataclass(frozen=True)
class LinearHead:
    """A GAP + linear head after the CAM layer: ``logits = weight @ mean_hw(A) + bias``."""

    weight: Tensor  # [K, C]
    bias: Tensor | None  # [K]

    def logits(self, feats: Tensor) -> Tensor:
        """Feature maps ``[B, C, h, w]`` -> logits ``[B, K]``."""
        out = feats.float().mean((2, 3)) @ self.weight.float().t()
        return out if self.bias is None else out + self.bias.float()


def find_linear_head(model: nn.Module, layer_name: str) -> LinearHead | None:
    """The linear classifier that may sit after GAP on ``layer_name``, or ``None``.

    Declared by ``model.gap_classifier`` at ``model.cam_layer``; Swin's ``head`` at its ``norm``;
    for other models, the model's only ``nn.Linear``. Either way it is a candidate:
    ``verify_head`` checks it against real logits.
    """
    owner = _declaring(model)
    declared = getattr(owner[1], "gap_classifier", None) if owner else None
    if isinstance(declared, nn.Linear):
        if layer_name != default_cam_layer(model):
            return None
        linear = declared
    elif (swin := transformer_head(model, model.get_submodule(layer_name))) is not None:
        linear = swin
    else:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if len(linears) != 1:
            return None
        linear = linears[0]
    bias = None if linear.bias is None else linear.bias.detach()
    return LinearHead(linear.weight.detach(), bias)


def verify_head(head: LinearHead | None, feats: Tensor, logits: Tensor) -> LinearHead | None:
    """Keeps ``head`` only if it reproduces the model's logits from ``feats`` (else ``None``).

    A wrong guess (a ReLU or a second layer between the CAM layer and the classifier, as in
    torchvision's DenseNet) would otherwise give silently wrong maps.
    """
    if head is None or head.weight.shape != (logits.shape[1], feats.shape[1]):
        return None
    # Under mixed precision the model's own head ran in bf16 / fp16: allow its rounding.
    tol = max(1e-3, 8 * torch.finfo(logits.dtype).eps) if logits.is_floating_point() else 1e-3
    with torch.no_grad():
        predicted = head.logits(feats)
        scale = 1.0 + logits.detach().float().abs().max()
        ok = (predicted - logits.detach().float()).abs().max() <= tol * scale
    return head if bool(ok) else None

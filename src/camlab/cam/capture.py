"""One forward pass that captures the target layer's activation, with the model left untouched.

Why CAMs run in eval mode: a CAM explains the model used for prediction, and a CAM call must
not update BatchNorm running statistics or draw dropout masks from the RNG inside a training
loop. ``cam_session`` switches every module to eval, then restores each module's own flag and
the RNG state, whatever the call raised.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camlab.errors import CamlabError
from camlab.evalmode import eval_mode


@contextmanager
def float32_maps(device: torch.device) -> Iterator[None]:
    """Autocast off. Under mixed precision (``trainer.precision=bf16-mixed``) the model's forward
    runs in the caller's autocast, and the maps are then computed in float32 from the captured
    activations: a CAM is a weighted sum over hundreds of channels, which bf16 would round."""
    with torch.autocast(device.type, enabled=False):
        yield


@contextmanager
def cam_session(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, RNG state saved, autograd usable even inside ``torch.inference_mode``."""
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        # Lightning's validation loop runs under inference_mode; the gradient methods need
        # their own autograd-enabled forward, so leave it for the duration of the call.
        with torch.inference_mode(False), eval_mode(model):
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)


@dataclass
class Capture:
    """Result of ``forward_capture``.

    Attributes:
        logits: model output ``[B, K]``.
        acts: target-layer activation ``[B, C, h, w]`` (``transform(raw)``; ``raw`` itself when
            there is no transform).
        raw: the layer's own output (e.g. ViT tokens ``[B, 1 + h*w, C]``); an autograd leaf when
            ``track`` was set, so ``torch.autograd.grad(score, raw)`` differentiates only the
            layers after it.
        extra: what a method's own forward captured (FullGrad: the bias layers' outputs).
    """

    logits: Tensor
    acts: Tensor
    raw: Tensor
    extra: object = None


def forward_capture(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    track: bool,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Capture:
    """Runs ``model(images)`` once and captures ``layer``'s output.

    Must be called inside ``cam_session`` (grad disabled). With ``track``, the activation is
    replaced by a detached leaf and grad mode is switched on from there to the output, so the
    autograd graph covers only the layers after the target layer: no graph (and no memory) for
    the layers before it, and no path into the parameters before it. ``transform`` maps the
    layer's output to ``[B, C, h, w]`` (token grids of vision transformers).

    Raises:
        CamlabError: the layer did not run, ran more than once, its output (transformed) is not
            ``[B, C, h, w]``, or the model output is not ``[B, K]``.
    """
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or (transform is None and output.dim() != 4):
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise CamlabError(
                f"The target layer must output [B, C, h, w]; it gave {shape}. For token "
                "outputs pass reshape_transform=<tokens -> [B, C, h, w]>."
            )
        leaf = output.detach()
        if track:
            leaf.requires_grad_(True)
            torch.set_grad_enabled(True)  # stays on for the rest of this forward
        captured.append(leaf)
        # A clone goes on, so in-place ops downstream (DenseNet's F.relu(inplace=True)) cannot
        # modify the captured activation or a leaf that requires grad.
        return leaf.clone()

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(images)
    finally:
        handle.remove()
        torch.set_grad_enabled(False)
    if len(captured) != 1:
        raise CamlabError(
            f"The target layer ran {len(captured)} times in one forward pass; choose a layer "
            "that runs exactly once."
        )
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise CamlabError(f"The model must return logits [B, num_classes]; it returned {got}.")
    raw = captured[0]
    acts = raw if transform is None else transform(raw)
    if acts.dim() != 4:
        raise CamlabError(
            f"reshape_transform must give [B, C, h, w]; it gave {tuple(acts.shape)} from "
            f"{tuple(raw.shape)}."
        )
    return Capture(logits, acts, raw)

"""What a CAM method receives: the captured activation, the targets, and how to get more."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camlab.cam.layers import LinearHead

Transform = Callable[[Tensor], Tensor]


@dataclass
class CamInputs:
    """Inputs of one CAM method call.

    Attributes:
        acts: target-layer activation ``[B, C, h, w]`` (float32, detached).
        targets: class indices ``[B, k]``.
        logits: model output ``[B, K]`` (detached).
        head: the verified GAP + linear head after the target layer, or ``None``.
        images: the model input ``[B, ...]`` (Score-CAM re-runs the model on masked copies).
        run_model: ``images -> logits`` under no grad, in the CAM session (Score-CAM).
        autograd_grads: ``targets [B, k] -> dY/dA [B, k, C, h, w]``, or ``None`` when the
            activation was captured without a graph.
        closed_form: allow the exact closed-form gradient when ``head`` is known.
        max_batch: most masked images per forward pass (Score-CAM memory bound).
        layer: the target layer (methods that re-run the model on noisy or ablated copies).
        raw: the layer's own output, detached (``acts`` before ``transform``).
        transform: layer output -> ``[B, C, h, w]`` (token grids), or ``None``.
        num_samples: noise samples / integration steps (SmoothGrad-CAM++, SS-CAM, IS-CAM).
        noise_std: standard deviation of that noise.
        extra: what a method's own forward pass captured (FullGrad).
    """

    acts: Tensor
    targets: Tensor
    logits: Tensor
    head: LinearHead | None
    images: Tensor
    run_model: Callable[[Tensor], Tensor]
    autograd_grads: Callable[[Tensor], Tensor] | None
    closed_form: bool = True
    max_batch: int = 64
    layer: nn.Module | None = None
    raw: Tensor | None = None
    transform: Transform | None = None
    num_samples: int = 0
    noise_std: float = 0.0
    extra: object = None

    def grads(self) -> Tensor:
        """Gradient of each target logit w.r.t. the activation, ``[B, k, C, h, w]``.

        For a GAP + linear head, ``y_t = w_t . mean_hw(A) + b_t`` so ``dy_t/dA[c, i, j] =
        w_t[c] / (h * w)`` at every location: exact, and no backward pass. Otherwise autograd
        through the layers after the target layer only.
        """
        if self.closed_form and self.head is not None:
            _, channels, h, w = self.acts.shape
            per_class = self.head.weight.float()[self.targets] / (h * w)  # [B, k, C]
            return per_class[..., None, None].expand(*per_class.shape, h, w)
        if self.autograd_grads is None:
            raise RuntimeError("activation captured without a graph; gradients unavailable")
        return self.autograd_grads(self.targets).float()


def autograd_grads(
    logits: Tensor, acts: Tensor, transform: Transform | None = None
) -> Callable[[Tensor], Tensor]:
    """Gradient provider for ``CamInputs``: one backward of the post-layer graph per rank.

    Summing the target logits over the batch gives every image its own gradient in one call,
    because images do not interact in eval mode. ``torch.autograd.grad`` with ``acts`` as the
    only input never writes ``.grad`` and never runs the parameters' accumulate-grad hooks (so
    DDP's reducer is not triggered). ``acts`` is the captured leaf (the layer's raw output);
    ``transform`` maps each gradient like the activation (token grid), as pytorch-grad-cam's
    ``reshape_transform`` does.
    """

    def grads(targets: Tensor) -> Tensor:
        k = targets.shape[1]
        out = []
        for j in range(k):
            with torch.enable_grad():  # the caller's session is no_grad
                score = logits.gather(1, targets[:, j : j + 1]).sum()
            grad = torch.autograd.grad(score, acts, retain_graph=j < k - 1)[0]
            out.append(grad if transform is None else transform(grad))
        return torch.stack(out, dim=1)

    return grads

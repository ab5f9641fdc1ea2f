"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, arXiv:1905.00780), as pytorch-grad-cam's
``FullGrad``: input-gradient plus bias-gradient maps of every layer with a bias.

    S = sum_color N(|dy/dx * x|) + sum_l sum_c U(N(|b_l,c * dy/dz_l,c|))

over every ``Conv2d`` / ``BatchNorm2d`` with a bias (BatchNorm's effective eval-mode bias
``beta - mu * gamma / sqrt(var + eps)``; BatchNorm without running statistics is skipped, its
bias depends on the batch), ``z_l`` the layer's output, ``N`` the per-(image, channel) min-max at
the layer's resolution and ``U`` bilinear upsampling to the input size. Unlike pytorch-grad-cam
``N`` has no ``eps = 1e-7``, which dominates its small bias-gradient maps, and the channels of a
layer are summed before upsampling (upsampling is linear: the same map, one resize per layer).
The maps are at input resolution, unsigned, and ignore ``target_layer``. Cost: one forward and
one full backward (to the input), about 3 forwards.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlab.cam.activation import eigencam
from camlab.cam.capture import Capture
from camlab.cam.context import CamInputs
from camlab.cam.postprocess import minmax_normalize
from camlab.errors import CamlabError


def _bias(module: nn.Module) -> Tensor | None:
    if isinstance(module, nn.Conv2d):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.BatchNorm2d) and module.affine and module.running_mean is not None:
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return (module.bias - module.running_mean * scale).detach()
    return None


def fullgrad_capture(net: nn.Module, images: Tensor) -> Capture:
    """One forward with the graph from the input: logits, and every bias layer's output.

    Must run inside ``cam_session``. Each bias layer's output is kept and a clone goes on, so
    in-place ops after it (``ReLU(inplace=True)`` after BatchNorm) leave the kept tensor the
    layer's own output; gradients are taken w.r.t. it and the input only (``autograd.grad``).

    Returns:
        ``Capture`` with ``acts = raw =`` the images and ``extra`` the input leaf, the logits
        with their graph and the list of ``(bias [C], output [B, C, h, w])``.
    """
    outputs: list[tuple[Tensor, Tensor]] = []
    handles = []
    for module in net.modules():
        bias = _bias(module)
        if bias is None:
            continue

        def hook(_m: nn.Module, _i: tuple, out: Tensor, bias: Tensor = bias) -> Tensor:
            outputs.append((bias, out))
            return out.clone()

        handles.append(module.register_forward_hook(hook))
    x = images.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = net(x)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise CamlabError(f"The model must return logits [B, num_classes]; it returned {got}.")
    return Capture(logits, images.detach(), images.detach(), extra=(x, logits, outputs))


def _layer_maps(inp: CamInputs) -> Tensor:
    """Per-layer maps ``[B, k, C_in + L, H, W]``: the input map per colour, then each layer's."""
    x, logits, outputs = inp.extra
    size = x.shape[-2:]
    k = inp.targets.shape[1]
    per_rank = []
    for j in range(k):
        with torch.enable_grad():
            score = logits.gather(1, inp.targets[:, j : j + 1]).sum()
        tensors = [x] + [out for _, out in outputs]
        grads = torch.autograd.grad(score, tensors, retain_graph=j < k - 1, allow_unused=True)
        maps = list(minmax_normalize((grads[0] * x).abs().detach().float()).unbind(1))
        for (bias, _), grad in zip(outputs, grads[1:], strict=True):
            if grad is None:  # the layer does not reach this logit
                maps.append(torch.zeros_like(maps[0]))
                continue
            contrib = minmax_normalize((bias.float()[:, None, None] * grad.float()).abs()).sum(1)
            if contrib.shape[-2:] != size:
                contrib = F.interpolate(
                    contrib[:, None], size=size, mode="bilinear", align_corners=False
                )[:, 0]
            maps.append(contrib)
        per_rank.append(torch.stack(maps, 1))
    return torch.stack(per_rank, 1)


def fullgrad(inp: CamInputs) -> Tensor:
    """FullGrad maps ``[B, k, H, W]`` (sum of the per-layer maps)."""
    return _layer_maps(inp).sum(2)


def fullgrad_eigen(inp: CamInputs) -> Tensor:
    """pytorch-grad-cam's FullGrad ``eigen_smooth``: the per-layer maps (the input map one per
    colour) are min-max scaled, shrunk 8x (bilinear, as its ``cv2.resize``), and projected on
    their first principal component, which is min-max scaled and upsampled: ``[B, k, H, W]``."""
    maps = _layer_maps(inp)  # [B, k, C_in + L, H, W]
    b, k, n, h, w = maps.shape
    small = (max(1, h // 8), max(1, w // 8))
    flat = minmax_normalize(maps).reshape(b * k, n, h, w)
    shrunk = F.interpolate(flat, size=small, mode="bilinear", align_corners=False)
    proj = minmax_normalize(eigencam(shrunk))  # [B*k, h/8, w/8]
    up = F.interpolate(proj[:, None], size=(h, w), mode="bilinear", align_corners=False)
    return up.reshape(b, k, h, w)

"""Smooth Grad-CAM++ (Omeiza et al., 2019, arXiv:1908.01224) as torchcam's ``SmoothGradCAMpp``
computes it.

With ``n`` noisy copies ``X + d_i``, ``d_i ~ N(0, std^2)`` per pixel (torchcam's defaults
``n = 4``, ``std = 0.3``), ``G_i`` the gradient of the target logit at the target layer for copy
``i`` and ``A`` the clean activation:

    D2 = mean_i G_i^2,  D3 = mean_i G_i^3,
    a_c(i, j) = D2 / (2 D2 + sum_ab A_c(a, b) D3_c(a, b))   (0 where the denominator is 0),
    w_c = sum_ij a_c(i, j) ReLU(G_n,c(i, j)),  L = ReLU(sum_c w_c A_n,c)

where ``G_n`` and ``A_n`` belong to the *last* noisy copy: torchcam reads its hooks after the
loop, and this module reproduces it so that both give the same maps. The paper's Eq. differs in
two places (its ``alpha`` uses ``S_c D3(i, j)`` per location, like Grad-CAM++; its weights the
averaged gradient and the map the clean activation). torchcam's ``eps = 1e-8`` in the
denominator is left out, as in ``gradient.gradcampp`` (it dominates for small gradients).

The noise comes from the default generator of the images' device, one ``[B, C, H, W]`` tensor per
sample, like torchcam's draws (the same numbers on the CPU). With a verified GAP + linear head
after the layer the gradient is the same for every input (``w_t / (h*w)``), so only the last
noisy copy is run (its activation is used); the other samples' noise is still drawn.
"""

import torch
from torch import Tensor

from camlab.cam.capture import forward_capture
from camlab.cam.context import CamInputs, autograd_grads


def smoothgradcampp_parts(inp: CamInputs) -> tuple[Tensor, Tensor]:
    """Weights ``[B, k, C]`` and the activation they combine ``[B, C, h, w]`` (last noisy copy)."""
    constant = inp.closed_form and inp.head is not None
    g2 = g3 = last_grads = last_acts = None
    for i in range(inp.num_samples):
        noise = torch.randn_like(inp.images) * inp.noise_std
        if constant and i < inp.num_samples - 1:
            continue  # same gradient for every input; only the last copy's activation is used
        noisy = inp.images + noise
        cap = forward_capture(inp.run_model, inp.layer, noisy, not constant, inp.transform)
        if constant:
            grads = inp.grads()
        else:
            grads = autograd_grads(cap.logits, cap.raw, inp.transform)(inp.targets).float()
        last_grads, last_acts = grads, cap.acts.detach().float()
        if constant:
            g2, g3 = grads.pow(2), grads.pow(3)
        else:
            g2 = grads.pow(2) if g2 is None else g2 + grads.pow(2)
            g3 = grads.pow(3) if g3 is None else g3 + grads.pow(3)
    if not constant:
        g2, g3 = g2 / inp.num_samples, g3 / inp.num_samples
    denom = 2 * g2 + (g3 * inp.acts[:, None]).sum((-2, -1), keepdim=True)
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
    weights = (alpha * last_grads.relu()).sum((-2, -1))  # [B, k, C]
    return weights, last_acts


def smoothgradcampp(inp: CamInputs) -> Tensor:
    """Smooth Grad-CAM++ maps ``[B, k, h, w]`` (see the module docstring)."""
    weights, acts = smoothgradcampp_parts(inp)
    return torch.einsum("bkc,bchw->bkhw", weights, acts).relu()

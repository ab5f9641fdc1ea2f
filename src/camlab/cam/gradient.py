"""Gradient-weighted CAMs. Notation: activation ``A [B, 1, C, h, w]``, gradient of the target
logit ``G = dy_t/dA [B, k, C, h, w]``; every map function returns ``[B, k, h, w]``.

Each method is split into its per-channel contributions (``*_terms``, ``[B, k, C, h, w]``, or
``*_weights`` ``[B, k, C]`` times ``A``), whose sum over channels is the map: ``eigen_smooth``
projects the same contributions on their first principal component instead of summing them.
"""

import torch
from torch import Tensor


def weighted_sum(weights: Tensor, acts: Tensor) -> Tensor:
    """``sum_c w_c A_c``: weights ``[B, k, C]``, acts ``[B, 1, C, h, w]`` -> ``[B, k, h, w]``."""
    return torch.einsum("bkc,bchw->bkhw", weights, acts[:, 0])


def weighted_terms(weights: Tensor, acts: Tensor) -> Tensor:
    """``w_c A_c``: weights ``[B, k, C]``, acts ``[B, 1, C, h, w]`` -> ``[B, k, C, h, w]``."""
    return weights[..., None, None] * acts


def gradcam_weights(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM's ``alpha_c = mean_ij G_c(i, j)``, ``[B, k, C]``."""
    return grads.mean((-2, -1))


def gradcam(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391).

    ``L = ReLU(sum_c alpha_c A_c)`` with ``alpha_c = mean_ij G_c(i, j)``.
    """
    return weighted_sum(gradcam_weights(acts, grads), acts).relu()


def hirescam_terms(acts: Tensor, grads: Tensor) -> Tensor:
    """HiResCAM's element-wise ``G_c * A_c``, ``[B, k, C, h, w]``."""
    return grads * acts


def hirescam(acts: Tensor, grads: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin, 2020, arXiv:2011.08891).

    ``L = sum_c G_c * A_c`` element-wise, kept signed: for a GAP + linear head it sums to
    ``y_t - b_t``, each location's exact contribution (apply ReLU for display).
    """
    return hirescam_terms(acts, grads).sum(2)


def gradcampp_weights(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM++'s ``w_c = sum_ij a_c(i, j) ReLU(G_c(i, j))``, ``[B, k, C]`` (``gradcampp``)."""
    total = acts.sum((-2, -1), keepdim=True)  # S_c [B, 1, C, 1, 1]
    denom = 2 + total * grads
    positive = grads > 0  # only ReLU(G) > 0 contributes to w_c
    safe = torch.where(positive & (denom != 0), denom, torch.ones_like(denom))
    alpha = torch.where(positive & (denom != 0), 1 / safe, torch.zeros_like(denom))
    return (alpha * grads.relu()).sum((-2, -1))


def gradcampp(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, arXiv:1710.11063), closed form of Eq. 19.

    With ``S_c = sum_ab A_c(a, b)`` and the exponential-score assumption of the paper,
    ``a_c(i, j) = G^2 / (2 G^2 + S_c G^3) = 1 / (2 + S_c G)`` where ``G != 0`` (else 0),
    ``w_c = sum_ij a_c(i, j) ReLU(G_c(i, j))``, ``L = ReLU(sum_c w_c A_c)``. This is what
    pytorch-grad-cam computes, minus its ``eps = 1e-6`` in the denominator, which dominates
    when gradients are ~1e-3 (typical for an ImageNet head at 7x7) and distorts the weights.
    """
    return weighted_sum(gradcampp_weights(acts, grads), acts).relu()


def xgradcam_weights(acts: Tensor, grads: Tensor) -> Tensor:
    """XGrad-CAM's ``w_c = sum_ij G_c A_c / sum_ab A_c`` (0 where the sum is 0), ``[B, k, C]``."""
    total = acts.sum((-2, -1))  # [B, 1, C]
    num = (grads * acts).sum((-2, -1))  # [B, k, C]
    return torch.where(total != 0, num / torch.where(total != 0, total, 1), 0)


def xgradcam(acts: Tensor, grads: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al., BMVC 2020, arXiv:2008.02312).

    ``w_c = sum_ij G_c(i, j) A_c(i, j) / sum_ab A_c(a, b)`` (0 where the sum is 0),
    ``L = ReLU(sum_c w_c A_c)``.
    """
    return weighted_sum(xgradcam_weights(acts, grads), acts).relu()


def layercam_terms(acts: Tensor, grads: Tensor) -> Tensor:
    """LayerCAM's element-wise ``ReLU(G_c) * A_c``, ``[B, k, C, h, w]``."""
    return grads.relu() * acts


def layercam(acts: Tensor, grads: Tensor) -> Tensor:
    """LayerCAM (Jiang et al., IEEE TIP 2021, doi:10.1109/TIP.2021.3089943).

    ``L = ReLU(sum_c ReLU(G_c) * A_c)`` element-wise.
    """
    return layercam_terms(acts, grads).sum(2).relu()

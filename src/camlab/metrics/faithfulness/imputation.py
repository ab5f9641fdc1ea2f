"""ROAD's noisy linear imputation (Rong et al., ICML 2022), batched on the images' device.

Each removed pixel becomes the weighted mean of its 8 neighbours (a sparse linear system, as
pytorch-grad-cam's ``NoisyLinearImputer``), plus Gaussian noise; the systems are solved by
multigrid-preconditioned conjugate gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The 8 neighbours' weights of ROAD's imputation (pytorch-grad-cam's ``neighbors_weights``).
_STENCIL = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def _box121(x: Tensor) -> Tensor:
    """``[1 2 1]^T [1 2 1]`` filter of the last two dims, zero outside (two 3-tap passes).

    The imputation's neighbour weights are this filter / 12 minus its centre (4 / 12), and
    the separable passes are several times faster on the CPU than a depthwise convolution.
    """
    xp = F.pad(x, (1, 1, 1, 1))
    rows = torch.add(xp[..., :, :-2] + xp[..., :, 2:], xp[..., :, 1:-1], alpha=2)
    return torch.add(rows[..., :-2, :] + rows[..., 2:, :], rows[..., 1:-1, :], alpha=2)


def _neighbour_sum(x: Tensor) -> Tensor:
    """``sum_o w_o x[i + o]`` over the 8 neighbours (zero outside the image)."""
    return (_box121(x) - 4 * x) / 12


class _Operator:
    """``x -> s x - removed * sum_o w_o x[i + o]`` for ``x`` zero outside the removed pixels,
    as ``d x - (removed / 12) box121(x)`` with ``d = s + removed / 3`` (fewer passes)."""

    def __init__(self, removed: Tensor, in_image: Tensor) -> None:
        self.diag = in_image + removed / 3
        self.weight = removed / 12

    def __call__(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.diag * x, self.weight, _box121(x), value=-1)


def _stencil_apply(coef: Sequence[Tensor], x: Tensor) -> Tensor:
    """Variable 9-point stencil: ``y[i] = sum_k coef[k][i] x[i + offset_k]``.

    Args:
        coef: 9 contiguous ``[N, 1, h, w]`` (offset ``k`` = ``_OFFSETS[k]``).
        x: ``[N, C, h, w]``.
    """
    h, w = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1))
    y = coef[4] * x
    for k, (dy, dx) in enumerate(_OFFSETS):
        if k != 4:
            y.addcmul_(coef[k], xp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w])
    return y


def _restrict(x: Tensor) -> Tensor:
    """Sum over 2x2 blocks (``P^T``), odd sizes padded with zeros; strided adds are several
    times faster on the CPU than a reshape-and-sum."""
    x = _pad_even(x)
    x = x[..., 0::2, :] + x[..., 1::2, :]
    return x[..., 0::2] + x[..., 1::2]


def _prolong(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Each coarse cell copied to its 2x2 children (``P``), cropped to ``size``."""
    return F.interpolate(x, scale_factor=2, mode="nearest")[..., : size[0], : size[1]]


def _pad_even(x: Tensor) -> Tensor:
    return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))


def _coarsen(coef: Tensor) -> Tensor:
    """Galerkin operator ``P^T A P`` of a 9-point stencil for 2x2 aggregation (still 9-point).

    ``P`` copies a coarse cell to its 2x2 children, so the coarse coefficient between cells
    ``I`` and ``I + d`` sums the fine couplings from the children of ``I`` to those of
    ``I + d``: a child at parity ``p`` coupled through offset ``o`` lands in ``d = (p + o) // 2``.
    """
    n = coef.shape[0]
    fine = _pad_even(coef)
    hc, wc = fine.shape[-2] // 2, fine.shape[-1] // 2
    fine = fine.view(n, 9, hc, 2, wc, 2)
    coarse = coef.new_zeros(n, 9, hc, wc)
    for k, (oy, ox) in enumerate(_OFFSETS):
        for py in (0, 1):
            for px in (0, 1):
                d = ((py + oy) // 2 + 1) * 3 + (px + ox) // 2 + 1
                coarse[:, d] += fine[:, k, :, py, :, px]
    return coarse


def _dense_inverse(coef: Tensor) -> Tensor:
    """Inverse of the (small) matrix of a 9-point stencil ``[N, 9, h, w]``, ``[N, hw, hw]``.

    Cells outside the system (empty rows) get a unit diagonal, then a zero row and column in
    the inverse, so they stay at 0.
    """
    n, _, h, w = coef.shape
    cells = h * w
    matrix = coef.new_zeros(n, cells, cells, dtype=torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=coef.device), torch.arange(w, device=coef.device), indexing="ij"
    )
    ys, xs = ys.flatten(), xs.flatten()
    for k, (dy, dx) in enumerate(_OFFSETS):
        ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        rows, cols = (ys * w + xs)[ok], ((ys + dy) * w + xs + dx)[ok]
        matrix[:, rows, cols] = coef[:, k].flatten(1)[:, rows].double()
    active = matrix.diagonal(dim1=1, dim2=2) > 0
    matrix = matrix + torch.diag_embed((~active).double())
    inverse = torch.linalg.inv(matrix) * (active[:, :, None] & active[:, None, :])
    return inverse.to(coef.dtype)


class _Multigrid:
    """Symmetric V-cycle preconditioner for the ROAD imputation system: 2x2 aggregation,
    Galerkin coarse stencils (``_coarsen``), one damped-Jacobi sweep before and after each
    coarse correction (over-corrected by 1.6, which piecewise-constant aggregation needs), an
    exact solve on the coarsest grid (at most 64 cells).

    Plain CG needs about as many iterations as the largest hole is wide (hundreds at 224 px);
    preconditioned, about 20 at any size. It runs in float32: it only steers CG, whose float64
    residuals set the accuracy.

    Args:
        removed: ``[N, 1, H, W]`` float32, 1 on the unknowns.
        in_image: ``[N, 1, H, W]`` float32, the diagonal (weight of the in-image neighbours).
    """

    def __init__(self, removed: Tensor, in_image: Tensor, omega=0.9, overcorrect=1.6) -> None:
        self.removed, self.fine = removed, _Operator(removed, in_image)
        n, _, h, w = removed.shape
        coef = removed.new_zeros(n, 9, h, w)
        padded = F.pad(removed[:, 0], (1, 1, 1, 1))
        for k, (dy, dx) in enumerate(_OFFSETS):
            if k != 4:
                neighbour = padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                coef[:, k] = -_STENCIL[dy + 1][dx + 1] * removed[:, 0] * neighbour
        coef[:, 4] = in_image[:, 0]
        # The finest level uses the constant stencil (_neighbour_sum, fast); its variable
        # coefficients are only needed to build the coarse levels.
        self.levels = []
        while True:
            coef = _coarsen(coef)
            if coef.shape[-2] * coef.shape[-1] <= 64:
                self.coarsest = _dense_inverse(coef)
                break
            self.levels.append([coef[:, k : k + 1].contiguous() for k in range(9)])
        self.inv_diag = [torch.where(in_image > 0, omega / in_image.clamp_min(1e-30), 0.0)]
        for c in self.levels:
            self.inv_diag.append(torch.where(c[4] > 0, omega / c[4].clamp_min(1e-30), 0.0))
        self.overcorrect = overcorrect

    def _apply(self, level: int, x: Tensor) -> Tensor:
        if level == 0:
            return self.fine(x * self.removed)
        return _stencil_apply(self.levels[level - 1], x)

    def __call__(self, r: Tensor) -> Tensor:
        return self._cycle(0, r.float()).to(r.dtype)

    def _cycle(self, level: int, r: Tensor) -> Tensor:
        h, w = r.shape[-2:]
        if level == len(self.levels) + 1:
            n, c = r.shape[:2]
            flat = torch.bmm(self.coarsest, r.reshape(n, c, h * w).transpose(1, 2))
            return flat.transpose(1, 2).reshape(n, c, h, w)
        inv_diag = self.inv_diag[level]
        x = inv_diag * r
        coarse = self._cycle(level + 1, _restrict(r - self._apply(level, x)))
        up = _prolong(coarse, (h, w))
        if level == 0:  # the fine result must vanish on kept pixels (CG's subspace)
            up = up * self.removed
        x = x.add_(up, alpha=self.overcorrect)
        return x.addcmul_(inv_diag, r - self._apply(level, x))


def noisy_linear_impute(
    images: Tensor,
    keep: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-7,
    max_iter: int = 500,
) -> Tensor:
    """ROAD's noisy linear imputation: every removed pixel becomes the weighted mean of its
    in-image 8 neighbours (1/6 edge, 1/12 corner, renormalised at the border), plus noise.

    The removed pixels' values solve one sparse symmetric positive definite system per image
    (the negated system pytorch-grad-cam's ``NoisyLinearImputer`` builds and solves with
    SciPy's ``spsolve``), shared by the channels; here it is solved for the whole batch on the
    images' device by multigrid-preconditioned conjugate gradients (float32 iterations, float64
    residuals and solution), to a relative residual of ``tol`` (1e-7: within a few float32
    ulps of the direct solve; the tests ask for 1e-6). An image with no
    kept pixel has no such system (the peer's matrix is singular) and imputes to 0 + noise.

    Args:
        images: ``[N, C, H, W]``.
        keep: ``[N, H, W]`` bool, True where the pixel is kept.
        noise: standard deviation of the Gaussian noise added to imputed pixels (0.01: ROAD's).
        generator: random generator for the noise (the images' device), or the global one.
        tol: relative residual at which CG stops (per image and channel).
        max_iter: CG iteration cap.

    Returns:
        ``[N, C, H, W]`` in the images' dtype: kept pixels unchanged.
    """
    if keep.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"keep {tuple(keep.shape)} must be [N, H, W] for {tuple(images.shape)}")
    keep = keep.to(images.device).bool()[:, None]  # [N, 1, H, W]
    solvable = keep.flatten(1).any(dim=1)[:, None, None, None]
    removed = (~keep & solvable).double()  # no unknowns in images without any kept pixel
    known = images.double() * keep
    # A x = s x - removed * W(x) for x supported on removed pixels, s = in-image weight sum
    in_image = _neighbour_sum(torch.ones_like(removed)) * removed
    rhs = _neighbour_sum(known) * removed

    precondition = _Multigrid(removed.float(), in_image.float())
    operator = _Operator(removed, in_image)
    x = _pcg(operator, precondition.fine, rhs, precondition, tol, max_iter)
    out = known + x
    if noise:
        draw = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        out = out + noise * draw * ~keep
    return out.to(images.dtype)


def _pcg(
    operator, operator32, rhs: Tensor, precondition, tol: float, max_iter: int, refresh: int = 5
) -> Tensor:
    """Preconditioned conjugate gradients, one system per ``[n, c]`` plane of ``rhs``, in mixed
    precision ("reliable updates"): the iterations run in float32, and every ``refresh``
    iterations (or when the float32 residual says converged) the updates are added to the
    float64 solution and the residual is recomputed from it in float64. The float64 residual
    sets the accuracy; float32 halves the memory traffic of every other pass.

    Args:
        operator / operator32: ``x -> A x`` in float64 / float32.
        rhs: float64 ``[n, c, h, w]``.
        precondition: ``r -> M^-1 r`` (float32), symmetric positive definite.
        tol: stop when every plane's float64 residual is within ``tol`` of its ``rhs`` norm.

    Returns:
        float64 solution.
    """
    n, c, h, w = rhs.shape

    def dot(a: Tensor, b: Tensor) -> Tensor:  # per-plane dot products as one batched GEMV
        return torch.bmm(a.view(n * c, 1, h * w), b.view(n * c, h * w, 1)).view(n, c, 1, 1)

    target = tol * rhs.flatten(-2).norm(dim=-1)  # [n, c]

    def converged(residual: Tensor) -> bool:
        return bool((dot(residual, residual).view(n, c).sqrt() <= target).all())

    x = torch.zeros_like(rhs)
    if converged(rhs):
        return x
    dx = torch.zeros(rhs.shape, device=rhs.device, dtype=torch.float32)
    r = rhs.float()
    z = precondition(r)
    p = z
    rz = dot(r, z)
    for step in range(1, max_iter + 1):
        ap = operator32(p)
        # a converged plane (r == 0) has rz == 0: the guards keep it at rest instead of NaN
        alpha = rz / dot(p, ap).clamp_min(1e-30)
        dx.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        if step % refresh == 0 or converged(r.double()):
            x += dx
            dx.zero_()
            true = rhs - operator(x)
            if converged(true):
                return x
            r = true.float()
        z = precondition(r)
        rz_next = dot(r, z)
        p = torch.addcmul(z, rz_next / rz.clamp_min(1e-30), p)
        rz = rz_next
    return x + dx

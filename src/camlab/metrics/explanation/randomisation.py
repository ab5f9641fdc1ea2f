"""Randomisation: an explanation should depend on the model's parameters and on the class.

- MPRT, the model parameter randomisation test (Adebayo et al., NeurIPS 2018): similarity of
  the maps before and after re-initialising the model's layers one by one (lower is better).
- Random Logit (Sixt et al., ICML 2020): similarity of the map of the true class and the map
  of a random other class (lower is better).

Quantus 0.6.0 flattens the maps and compares them row by row: Spearman rank correlation
(MPRT), 1-D SSIM over the flattened map (Random Logit). Both metrics draw from their own
``seed`` option (Quantus's ``seed``, here ``random_seed``), not from the caller's generator.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlab.metrics.explanation.base import Explain, Spec, quantus_preprocess
from camlab.metrics.explanation.correlation import pearson, spearman
from camlab.metrics.explanation.robustness import explain_chunks

LAYER_ORDERS = ("top_down", "bottom_up", "independent")


def _ssim_1d(a: Tensor, b: Tensor, win_size: int = 7) -> Tensor:
    """Quantus's ``ssim`` of each flattened row pair: skimage's ``structural_similarity`` of
    1-D signals (a uniform window of 7, sample covariance, K1 = 0.01, K2 = 0.03, the mean over
    the windows inside the signal) with ``data_range`` the pair's joint max - min.

    Args:
        a, b: ``[N, L]``.

    Returns:
        ``[N]`` float64 (NaN where both rows are one constant: data_range 0).
    """
    x, y = a.double(), b.double()
    both = torch.cat([x, y], 1)
    data_range = both.amax(1) - both.amin(1)
    stack = torch.stack([x, y, x * x, y * y, x * y], 1)  # [N, 5, L]
    # Valid windows only: skimage filters with reflected borders, then crops them away.
    ux, uy, uxx, uyy, uxy = F.avg_pool1d(stack, win_size, stride=1).unbind(1)
    cov_norm = win_size / (win_size - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = ((0.01 * data_range) ** 2)[:, None], ((0.03 * data_range) ** 2)[:, None]
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(1)


SIMILARITIES = {
    "correlation_spearman": spearman,
    "correlation_pearson": pearson,
    "ssim": _ssim_1d,
}


def _similarity(name: str, a: Tensor, b: Tensor) -> Tensor:
    if name not in SIMILARITIES:
        raise ValueError(f"similarity_func {name!r}; valid: {sorted(SIMILARITIES)}")
    return SIMILARITIES[name](a.flatten(1).double(), b.flatten(1).double())


def _explain_preprocessed(
    explain: Explain,
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    normalise: bool,
    absolute: bool,
    batch_size: int,
    call_batch_size: int,
) -> Tensor:
    """The method's maps, preprocessed as Quantus's ``explain_batch`` does: normalised over each
    of its batches of ``call_batch_size`` images.

    Returns:
        ``[N, H, W]`` float64.
    """
    maps = explain_chunks(explain, model, images, targets, batch_size)
    return torch.cat(
        [quantus_preprocess(m, normalise, absolute) for m in maps.split(call_batch_size)]
    )


def random_layer_models(
    model: nn.Module, order: str = "top_down", seed: int = 42
) -> Iterator[tuple[str, nn.Module]]:
    """Quantus's ``get_random_layer_generator`` on a deep copy of ``model`` (left unchanged).

    Every module with ``reset_parameters`` (named_modules order; reversed for ``top_down``) is
    re-initialised in turn after ``torch.manual_seed(seed + 1)`` (the same seed for every layer,
    as Quantus does), cumulatively, or on the trained weights for ``independent``. The caller's
    torch generators are restored afterwards.

    Yields:
        ``(layer name, the randomised copy)``; the copy is changed in place between yields.
    """
    if order not in LAYER_ORDERS:
        raise ValueError(f"layer_order {order!r}; valid: {LAYER_ORDERS}")
    # Outside inference mode (Lightning's test loop runs in it): a copy made inside would hold
    # inference tensors, which the gradient methods cannot use.
    with torch.inference_mode(False):
        work = copy.deepcopy(model)
        trained = {k: v.clone() for k, v in work.state_dict().items()}
    modules = [(n, m) for n, m in work.named_modules() if hasattr(m, "reset_parameters")]
    if order == "top_down":
        modules = modules[::-1]
    devices = sorted({p.device.index or 0 for p in work.parameters() if p.is_cuda})
    for name, module in modules:
        with torch.inference_mode(False), torch.random.fork_rng(devices=devices):
            if order == "independent":
                work.load_state_dict(trained)
            torch.manual_seed(seed + 1)
            module.reset_parameters()
        yield name, work


def mprt_layers(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    layer_order: str = "top_down",
    similarity_func: str = "correlation_spearman",
    random_seed: int = 42,
    skip_layers: bool = False,
    normalise: bool = True,
    absolute: bool = True,
    call_batch_size: int = 64,
) -> dict[str, Tensor]:
    """MPRT's per-layer similarities, Quantus ``MPRT``'s default return value.

    Args:
        model: the classifier (eval mode; a deep copy is randomised).
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` the method's maps of ``labels`` on ``model``.
        labels: ``[N]``.
        masks: unused.
        explain: ``(model, images [M, C, H, W], targets [M]) -> [M, H, W]``, the method.
        seed: unused (Quantus draws from ``random_seed``).
        batch_size: images per ``explain`` call.
        layer_order: ``"top_down"`` (cascading from the output), ``"bottom_up"`` (cascading
            from the input) or ``"independent"``.
        similarity_func: ``"correlation_spearman"`` or ``"correlation_pearson"`` (Quantus's
            ``ssim`` fails inside MPRT 0.6.0).
        random_seed: Quantus's ``seed``; each layer re-initialises after
            ``torch.manual_seed(random_seed + 1)``.
        skip_layers: only the fully randomised model (plus ``"original"``).
        normalise, absolute: Quantus's ``normalise`` / ``abs`` of every map.
        call_batch_size: Quantus's call ``batch_size`` (the re-explained maps are normalised
            over each such batch).

    Returns:
        ``{"original": [N], layer: [N], ...}`` float64, in Quantus's order: ``"original"``
        compares ``maps`` with the method re-run on the trained model.
    """
    if explain is None:
        raise ValueError("MPRT needs the explanation method (explain)")
    a = quantus_preprocess(maps, normalise, absolute)
    run = dict(
        explain=explain, images=images.to(torch.float32), targets=labels, normalise=normalise,
        absolute=absolute, batch_size=batch_size, call_batch_size=call_batch_size,
    )  # fmt: skip
    out = {"original": _similarity(similarity_func, a, _explain_preprocessed(model=model, **run))}
    count = sum(hasattr(m, "reset_parameters") for m in model.modules())
    # The generator changes one copy in place: explain each layer's model before the next.
    for index, (name, random_model) in enumerate(
        random_layer_models(model, layer_order, random_seed)
    ):
        if skip_layers and index + 1 < count:
            continue
        out[name] = _similarity(
            similarity_func, a, _explain_preprocessed(model=random_model, **run)
        )
    return out


def mprt(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    layer_order: str = "top_down",
    similarity_func: str = "correlation_spearman",
    random_seed: int = 42,
    return_last_correlation: bool = False,
    skip_layers: bool = False,
    normalise: bool = True,
    absolute: bool = True,
    call_batch_size: int = 64,
) -> Tensor:
    """MPRT per image: Quantus's ``return_average_correlation=True`` (the mean over the layers
    and, as 0.6.0 does, the ``"original"`` entry too), or with ``return_last_correlation`` the
    fully randomised model's similarity. Arguments as ``mprt_layers``.

    Returns:
        ``[N]`` float64.
    """
    if skip_layers and not return_last_correlation:
        raise ValueError("skip_layers leaves no layers to average: set return_last_correlation")
    layers = mprt_layers(
        model, images, maps, labels, explain=explain, batch_size=batch_size,
        layer_order=layer_order, similarity_func=similarity_func, random_seed=random_seed,
        skip_layers=skip_layers, normalise=normalise, absolute=absolute,
        call_batch_size=call_batch_size,
    )  # fmt: skip
    stacked = torch.stack(list(layers.values()))
    return stacked[-1] if return_last_correlation else stacked.mean(0)


def random_logit(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels: Tensor,
    *,
    masks: Tensor | None = None,
    explain: Explain | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    num_classes: int = 1000,
    similarity_func: str = "ssim",
    random_seed: int = 42,
    normalise: bool = True,
    absolute: bool = False,
    call_batch_size: int = 64,
) -> Tensor:
    """Random Logit (Quantus ``RandomLogit``): similarity of the map of the label and the map of
    a random other class.

    Quantus re-seeds NumPy with its ``seed`` at each of its batches and draws the other class
    uniformly from the ``num_classes - 1`` classes left, so images at the same place in their
    batch get the same draw.

    Args:
        model: the classifier.
        images: ``[N, C, H, W]``.
        maps: ``[N, H, W]`` the method's maps of ``labels``.
        labels: ``[N]``.
        masks: unused.
        explain: ``(model, images [M, C, H, W], targets [M]) -> [M, H, W]``, the method.
        seed: unused (Quantus draws from ``random_seed``).
        batch_size: images per ``explain`` call.
        num_classes: the model's classes (Quantus's default 1000; set it to the model's).
        similarity_func: ``"ssim"``, ``"correlation_spearman"`` or ``"correlation_pearson"``.
        random_seed: Quantus's ``seed``.
        normalise, absolute: Quantus's ``normalise`` / ``abs`` of every map.
        call_batch_size: Quantus's call ``batch_size`` (re-seeding and normalising groups).

    Returns:
        ``[N]`` float64.
    """
    if explain is None:
        raise ValueError("random_logit needs the explanation method (explain)")
    sizes = [len(c) for c in labels.split(call_batch_size)]
    # Index among the classes other than the label, then shifted past the label.
    off = np.concatenate(
        [np.random.RandomState(random_seed).randint(0, num_classes - 1, n) for n in sizes]
    )
    off = torch.from_numpy(off).to(labels.device)
    others = off + (off >= labels).to(off.dtype)
    a = quantus_preprocess(maps, normalise, absolute)
    a_off = _explain_preprocessed(
        explain, model, images.to(torch.float32), others, normalise, absolute, batch_size,
        call_batch_size,
    )  # fmt: skip
    return _similarity(similarity_func, a, a_off)


def _mprt_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from quantus.functions import similarity_func  # only to build the reference call

    return {
        "layer_order": options["layer_order"],
        "similarity_func": getattr(similarity_func, options["similarity_func"]),
        "seed": options["random_seed"],
        "return_average_correlation": not options["return_last_correlation"],
        "return_last_correlation": options["return_last_correlation"],
        "skip_layers": options["skip_layers"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
    }


def _random_logit_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    from quantus.functions import similarity_func  # only to build the reference call

    return {
        "num_classes": options["num_classes"],
        "similarity_func": getattr(similarity_func, options["similarity_func"]),
        "seed": options["random_seed"],
        "normalise": options["normalise"],
        "abs": options["absolute"],
    }


SPECS: tuple[Spec, ...] = (
    Spec(
        "mprt", mprt, "MPRT", _mprt_kwargs, needs=("explain",), random=True,
    ),
    Spec(
        "random_logit", random_logit, "RandomLogit", _random_logit_kwargs, needs=("explain",),
        random=True,
    ),
)  # fmt: skip

"""What every Quantus-parity metric shares: Quantus's attribution preprocessing and its scores.

Quantus 0.6.0 normalises a call's whole attribution batch by its largest absolute value
(``normalise_by_max`` over every axis, batch included), then takes the absolute value where the
metric asks for it. camlab's score maps (``cams_to_scoremaps``) are min-max normalised to
[0, 1] per image, so there the batch-wide division is the identity and the numbers do not
depend on how images are batched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# explain(model, images [N, C, H, W], targets [N]) -> maps [N, H, W]: the method under test,
# re-run on perturbed inputs (robustness) or on a randomised copy of the model (randomisation).
Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def quantus_preprocess(maps: Tensor, normalise: bool, absolute: bool) -> Tensor:
    """Quantus's ``normalise_by_max`` (over the whole batch; skipped when all zero), then
    ``abs``, in float64.

    Args:
        maps: ``[N, H, W]``.

    Returns:
        ``[N, H, W]`` float64.
    """
    maps = maps.to(torch.float64)
    if normalise and bool((maps != 0).any()):
        maps = maps / maps.abs().max()
    return maps.abs() if absolute else maps


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, softmax: bool, batch_size: int = 256) -> Tensor:
    """Class scores as Quantus's ``PyTorchModel.predict`` gives them: logits, or their softmax.

    Args:
        images: ``[N, C, H, W]`` (any float dtype; run in float32 as Quantus does).

    Returns:
        ``[N, K]`` float32.
    """
    out = []
    for chunk in images.split(batch_size):
        logits = model(chunk.to(torch.float32))
        out.append(logits.softmax(-1) if softmax else logits)
    return torch.cat(out)


@dataclass(frozen=True)
class Spec:
    """One Quantus-parity metric.

    Attributes:
        name: camlab's key (``metrics.json``), snake case.
        fn: ``fn(model, images, maps, labels, *, masks, explain, seed, **options) -> [N]``
            float64 scores per image, equal to Quantus's list for the same call.
        quantus: the Quantus 0.6.0 class name.
        quantus_kwargs: ``(options) -> kwargs`` of the Quantus constructor giving the same metric.
        needs: ``masks`` (localisation) and/or ``explain`` (robustness, randomisation).
        random: whether the metric draws random numbers (``seed`` matters).
    """

    name: str
    fn: Callable[..., Tensor]
    quantus: str
    quantus_kwargs: Callable[[dict[str, Any]], dict[str, Any]]
    needs: tuple[str, ...] = ()
    random: bool = False

    @property
    def options(self) -> dict[str, Any]:
        """The metric's options and their defaults (Quantus's): ``fn``'s keyword arguments but
        the inputs, the seed and the forward chunk size (``batch_size``)."""
        parameters = inspect.signature(self.fn).parameters.values()
        return {
            p.name: p.default
            for p in parameters
            if p.kind is p.KEYWORD_ONLY and p.name not in NOT_OPTIONS
        }


NOT_OPTIONS = ("masks", "explain", "seed", "batch_size")

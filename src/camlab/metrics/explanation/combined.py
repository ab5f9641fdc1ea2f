"""The Quantus-parity metrics of one saliency method, accumulated over batches and ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from camlab.metrics.explanation.base import Explain, Spec


def all_specs() -> dict[str, Spec]:
    """Every metric by name, in the families' order (Quantus's categories)."""
    from camlab.metrics.explanation import (
        complexity,
        correlation,
        irof,
        localisation,
        perturbation,
        randomisation,
        robustness,
    )

    modules = (localisation, correlation, perturbation, irof, robustness, complexity, randomisation)
    return {spec.name: spec for module in modules for spec in module.SPECS}


def resolve(
    names: Sequence[str] | None, options: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, tuple[Spec, dict[str, Any]]]:
    """``{name: (spec, options)}`` with each metric's defaults overridden by ``options[name]``.

    Raises:
        ValueError: an unknown metric or option, naming the valid ones.
    """
    specs = all_specs()
    names = list(specs) if names is None else list(names)
    unknown = [n for n in [*names, *(options or {})] if n not in specs]
    if unknown:
        raise ValueError(f"unknown Quantus-parity metric(s) {unknown}; valid: {sorted(specs)}")
    resolved = {}
    for name in names:
        given = dict((options or {}).get(name) or {})
        bad = sorted(set(given) - set(specs[name].options))
        if bad:
            raise ValueError(
                f"{name}: unknown option(s) {bad}; valid: {sorted(specs[name].options)}"
            )
        resolved[name] = (specs[name], {**specs[name].options, **given})
    return resolved


class ExplanationMetrics(Metric):
    """Mean per-image score of each Quantus-parity metric of one method (NaN images, as
    Quantus returns them for e.g. a constant map's correlation, are counted apart).

    Args:
        names: metric names (``all_specs``); None = all.
        options: per-metric option overrides, ``{name: {option: value}}``; a
            ``features_in_step`` of None is one image row (the images' width).
        masks: whether ground-truth masks are given (else the localisation metrics are left
            out); decided up front so that every DDP rank computes the same metrics.
        seed: base seed of the random metrics; a batch's draws start from ``seed + offset``.
    """

    full_state_update = False

    def __init__(
        self,
        names: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        masks: bool = True,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        resolved = resolve(names, options)
        self.metrics = {n: so for n, so in resolved.items() if masks or "masks" not in so[0].needs}
        self.seed = seed
        count = len(self.metrics)
        for state in ("total", "count", "nan"):
            zeros = torch.zeros(count, dtype=torch.float64)
            self.add_state(state, default=zeros, dist_reduce_fx="sum")

    def update(
        self,
        model: nn.Module,
        images: Tensor,
        maps: Tensor,
        labels: Tensor,
        masks: Tensor | None = None,
        explain: Explain | None = None,
        offset: int = 0,
    ) -> None:
        """Scores one batch.

        Args:
            model: the classifier (eval mode; left unchanged).
            images: ``[N, C, H, W]``.
            maps: ``[N, H, W]`` the method's maps of ``labels``.
            labels: ``[N]``.
            masks: ``[N, H, W]`` bool ground truth (localisation metrics).
            explain: the method, ``(model, images, targets) -> [N, H, W]`` maps (robustness and
                randomisation re-run it).
            offset: the batch's position (e.g. its first image's index), added to ``seed``.
        """
        for k, (name, (spec, options)) in enumerate(self.metrics.items()):
            if options.get("features_in_step", 0) is None:  # one image row a step
                options = {**options, "features_in_step": int(images.shape[-1])}
            if "masks" in spec.needs and masks is None:
                raise ValueError(f"{name} needs ground-truth masks")
            if "explain" in spec.needs and explain is None:
                raise ValueError(f"{name} needs the explanation method (explain)")
            scores = spec.fn(
                model, images, maps, labels, masks=masks, explain=explain,
                seed=self.seed + offset, **options,
            ).to(self.total)  # fmt: skip
            finite = torch.isfinite(scores)
            self.total[k] += scores[finite].sum()
            self.count[k] += finite.sum()
            self.nan[k] += (~finite).sum()

    def compute(self) -> dict[str, float]:
        """``{name: mean}`` over the finite scores, plus ``<name>_nan`` where some were not."""
        out: dict[str, float] = {}
        for k, name in enumerate(self.metrics):
            count = float(self.count[k])
            out[name] = float(self.total[k]) / count if count else float("nan")
            if self.nan[k] > 0:
                out[f"{name}_nan"] = int(self.nan[k])
        return out

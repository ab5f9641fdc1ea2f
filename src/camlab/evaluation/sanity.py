"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018) of every CAM method.

A method's maps on the trained classifier are compared with its maps on changed copies:
layers re-initialised top down, cumulatively (cascading) or one at a time (independent)
(``camlab.evaluation.randomization``), and optionally a copy fine-tuned on permuted labels
(``camlab.evaluation.label_randomization``). The similarities (``camlab.metrics.similarity``:
Spearman with and without absolute values, SSIM, HOG) are averaged per changed model. A
method passes when its maps change: the Spearman rank correlation of the absolute maps with
every layer randomised falls below ``pass_below``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlab.cam import compute_cams
from camlab.errors import CamlabError
from camlab.evaluation.label_randomization import label_randomized_copy
from camlab.evaluation.randomization import (
    MODES,
    RandomizedModels,
    check_layers,
    randomization_layers,
)
from camlab.metrics.sanity import SanitySimilarity
from camlab.metrics.similarity import MEASURES

PASS_MEASURE = "spearman_abs"


def method_maps(model: nn.Module, images: Tensor, labels: Tensor, methods: Sequence[str]):
    """``{method: [B, H, W]}`` raw maps of the ``labels`` class at the images' resolution
    (bicubic, float64, not normalised: the signs and ranks are the method's). A model's own
    evaluation map (the reference's ACoL: ``evaluation_cam``) stands for ``cam``, as in the
    evaluation."""
    own = getattr(model, "evaluation_cam", None)
    own_cam = own(images, labels) if own is not None and "cam" in methods else None
    rest = [m for m in methods if not (m == "cam" and own_cam is not None)]
    _, maps = compute_cams(model, images, rest, targets=labels)
    if own_cam is not None:
        maps["cam"] = own_cam
    size = tuple(images.shape[-2:])
    return {
        m: F.interpolate(maps[m].detach().double()[:, None], size, mode="bicubic")[:, 0]
        for m in methods
    }


class SanityCheck(nn.Module):
    """The sanity checks of ``methods`` on ``classifier`` (read only: all changes are made on
    deep copies), accumulated over the batches given to ``update``.

    Args:
        classifier: the trained classifier.
        methods: CAM methods of ``camlab.cam``.
        layers: module names to randomise, top down; None = ``randomization_layers``.
        mode: ``cascading``, ``independent`` or ``both``.
        seed: seed of the random layers (layer k: ``seed + k``) and of the label permutation.
        num_images: the first images of the split that are compared.
        pass_below: a method passes when the Spearman correlation of its absolute maps with
            every layer randomised is below this.
        label_data: ``(images [N, C, H, W], labels [N])`` to fine-tune on with permuted labels,
            or None to skip the data randomisation test.
        label_steps, label_lr, label_batch_size: that fine-tuning's settings.
    """

    def __init__(
        self,
        classifier: nn.Module,
        methods: Sequence[str],
        layers: Sequence[str] | None = None,
        mode: str = "both",
        seed: int = 0,
        num_images: int = 16,
        pass_below: float = 0.5,
        label_data: tuple[Tensor, Tensor] | None = None,
        label_steps: int = 0,
        label_lr: float = 1e-3,
        label_batch_size: int = 32,
    ) -> None:
        super().__init__()
        if mode not in (*MODES, "both"):
            raise CamlabError(f"sanity.mode={mode!r}: use cascading, independent or both.")
        if not methods:
            raise CamlabError(
                "metrics includes sanity, but cam.methods names no CAM method (baselines do not "
                "read the classifier's weights). Add one, e.g. cam.methods=[cam,gradcam]."
            )
        self.methods = list(methods)
        self._classifier = [classifier]  # a list: not a second registration of the module
        names = randomization_layers(classifier) if layers is None else layers
        self.layers = check_layers(classifier, names)
        self.modes = list(MODES) if mode == "both" else [mode]
        self.num_images, self.pass_below, self.seed = num_images, pass_below, seed
        self.randomized = RandomizedModels(classifier, self.layers, seed)
        self.rows = [(m, layer) for m in self.modes for layer in self.layers]
        self.label_data = label_data if label_steps > 0 else None
        self.label_settings = {"steps": label_steps, "lr": label_lr, "batch_size": label_batch_size}
        if self.label_data is not None:
            self.rows.append(("labels", None))
        self.label_model: nn.Module | None = None
        self.label_info: dict[str, float] = {}
        self.similarity = nn.ModuleList(SanitySimilarity(len(self.rows)) for _ in self.methods)

    def _label_model(self, device: torch.device) -> nn.Module:
        """The permuted-label copy, fine-tuned on first use (on the evaluation's device)."""
        if self.label_model is None:
            images, labels = self.label_data
            self.label_model, self.label_info = label_randomized_copy(
                self._classifier[0], images.to(device), labels.to(device),
                seed=self.seed, **self.label_settings,
            )  # fmt: skip
        return self.label_model

    def _changed_models(self, device: torch.device) -> Iterator[tuple[int, nn.Module]]:
        """``(row, model)`` for every changed model, in ``self.rows`` order."""
        row = 0
        for mode in self.modes:
            r = self.randomized
            for _, model in r.cascading() if mode == "cascading" else r.independent():
                yield row, model
                row += 1
        if self.label_data is not None:
            yield row, self._label_model(device)

    def update(self, images: Tensor, labels: Tensor) -> None:
        """Compares the maps of one batch.

        Args:
            images: ``[B, C, H, W]``.
            labels: ``[B]`` the classes the maps are of (ground truth).
        """
        if len(images) == 0:
            return
        original = method_maps(self._classifier[0], images, labels, self.methods)
        for row, model in self._changed_models(images.device):
            changed = method_maps(model, images, labels, self.methods)
            for method, metric in zip(self.methods, self.similarity, strict=True):
                metric.update(row, original[method], changed[method])

    def compute(self) -> dict[str, dict[str, Any]]:
        """``{method: results}``: per mode, each measure's mean per layer (top down), the
        permuted-label row, the similarity with every layer randomised and whether the method
        passes. Every rank must call it (metric states are all-reduced)."""
        out = {}
        for method, metric in zip(self.methods, self.similarity, strict=True):
            computed = metric.compute()  # all-reduced; the states stay per rank after it
            table = computed["similarity"].tolist()
            result: dict[str, Any] = {
                "layers": self.layers,
                "num_images": int(computed["images"]),
                "pass_measure": PASS_MEASURE,
                "pass_below": self.pass_below,
            }
            for mode in self.modes:
                rows = [table[i] for i, (m, _) in enumerate(self.rows) if m == mode]
                result[mode] = {name: [r[j] for r in rows] for j, name in enumerate(MEASURES)}
            if self.label_data is not None:
                result["labels"] = {**dict(zip(MEASURES, table[-1], strict=True)),
                                    **self.label_info}  # fmt: skip
            if "cascading" in self.modes:
                full = {name: values[-1] for name, values in result["cascading"].items()}
                result["full_randomization"] = full
                result["passes"] = bool(full[PASS_MEASURE] < self.pass_below)
            out[method] = result
        return out

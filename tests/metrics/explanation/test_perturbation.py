"""Pixel-Flipping, Region Perturbation and Selectivity equal Quantus 0.6.0 per image.

The tolerance (rtol 1e-6, atol 1e-7) is float32 rounding of the scores: on CPU the curves and
areas have come out bit-identical (the ordering, baselines and random draws are Quantus's own
and the per-sample forwards agree across batch sizes), but another BLAS or device may change
the last bits of a batched forward. A wrong order, patch or baseline moves scores by far more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peer import digits, digits_case, run_quantus

from camlab.metrics.explanation.perturbation import (
    SPECS,
    pixel_flipping_curves,
    region_perturbation_curves,
    selectivity_curves,
)

SPEC = {spec.name: spec for spec in SPECS}
CURVES = {
    "pixel_flipping": pixel_flipping_curves,
    "region_perturbation": region_perturbation_curves,
    "selectivity": selectivity_curves,
}
TOL = {"rtol": 1e-6, "atol": 1e-7}


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    # Quantus 0.6.0's calculate_auc calls np.trapz, which NumPy 2.4 removed; same rule.
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def _quantised(maps: torch.Tensor) -> torch.Tensor:
    """Maps on 5 levels: most pixels tie, so the order among equals decides the curve."""
    return torch.round(maps * 4) / 4


def _check(name: str, over: dict, images, labels, maps, model, seed=None) -> None:
    spec = SPEC[name]
    options = {**spec.options, **over}
    kwargs = spec.quantus_kwargs(options)
    ours = spec.fn(model, images, maps, labels, seed=seed, **options).numpy()
    curves = CURVES[name](model, images, maps, labels, seed=seed, **options).numpy()
    if name == "pixel_flipping":
        assert kwargs.pop("return_auc_per_sample") is True
        theirs = run_quantus(spec.quantus, {**kwargs, "return_auc_per_sample": True},
                             model, images, labels, maps, seed=seed)  # fmt: skip
        their_curves = run_quantus(spec.quantus, kwargs, model, images, labels, maps, seed=seed)
    else:
        # Quantus returns only curves (float32 drops / float64 scores); the score is the area
        # its get_auc_score averages, np.trapz of each curve in that dtype.
        their_curves = run_quantus(spec.quantus, kwargs, model, images, labels, maps, seed=seed)
        dtype = np.float32 if name == "region_perturbation" else np.float64
        theirs = np.array([np.trapz(c.astype(dtype)) for c in their_curves], dtype=np.float64)
    assert curves.shape == their_curves.shape
    np.testing.assert_allclose(curves, their_curves, **TOL)
    np.testing.assert_allclose(ours, theirs, **TOL)


CASES = [
    # Quantus's default features_in_step=1 is 784 sequential forwards per image: one Quantus
    # call took 150 s here (2 loaded cores); 28 pixels a step keeps every other default.
    ("pixel_flipping", {"features_in_step": 28}, None),
    ("pixel_flipping", {"features_in_step": 16, "perturb_baseline": "mean"}, None),
    ("pixel_flipping", {"features_in_step": 49, "perturb_baseline": "uniform"}, 3),
    ("region_perturbation", {}, None),
    ("region_perturbation",
     {"patch_size": 5, "order": "lerf", "regions_evaluation": 20, "perturb_baseline": "mean"},
     None),
    ("region_perturbation", {"patch_size": 6, "order": "random", "perturb_baseline": "uniform"}, 5),
    ("selectivity", {}, None),
    ("selectivity", {"patch_size": 3, "perturb_baseline": "mean"}, None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "over", "seed"), CASES)
def test_matches_quantus(name, over, seed):
    model, images, labels, maps, _ = digits_case()
    _check(name, over, images, labels, maps, model, seed)


@pytest.mark.parametrize(
    ("name", "over"),
    [
        ("pixel_flipping", {"features_in_step": 28}),
        ("region_perturbation", {"patch_size": 7, "perturb_baseline": "mean"}),
        ("selectivity", {"patch_size": 7, "normalise": False, "absolute": True}),
    ],
)
def test_ties_follow_numpy_argsort(name, over):
    model, images, labels, maps, _ = digits_case()
    maps = _quantised(maps) - (0.5 if over.get("absolute") else 0.0)
    flat = -maps.flatten(1).numpy()
    # the case is sensitive: a stable sort would order the ties differently
    assert (np.argsort(flat, axis=1) != np.argsort(flat, axis=1, kind="stable")).any()
    _check(name, over, images, labels, maps, model)


@pytest.mark.parametrize(
    ("name", "over"),
    [
        ("region_perturbation",
         {"order": "random", "perturb_baseline": "uniform", "regions_evaluation": 5}),
        ("pixel_flipping", {"features_in_step": 196, "perturb_baseline": "uniform"}),
    ],
)  # fmt: skip
def test_random_draws_across_quantus_batches(name, over):
    """70 images are two Quantus batches (64 + 6): permutations and uniforms interleave."""
    model = digits_case()[0]
    images, labels = digits(range(70))
    maps = _quantised(torch.rand(70, 28, 28, generator=torch.Generator().manual_seed(0)))
    _check(name, over, images, labels, maps, model, seed=11)


def test_specs():
    assert [s.name for s in SPECS] == ["pixel_flipping", "region_perturbation", "selectivity"]
    assert not any(s.random for s in SPECS)
    assert SPEC["pixel_flipping"].quantus_kwargs(SPEC["pixel_flipping"].options) == {
        "features_in_step": 1, "perturb_baseline": "black", "normalise": True, "abs": False,
        "return_auc_per_sample": True,
    }  # fmt: skip

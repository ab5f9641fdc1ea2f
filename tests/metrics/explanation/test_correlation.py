"""FaithfulnessCorrelation and MonotonicityCorrelation equal Quantus 0.6.0 per image.

Tolerances: the perturbed images, draws and model scores are Quantus's own bit for bit (same
float32 forwards), so what is left is the similarity. Quantus's Pearson runs in float32 (SciPy
keeps the float32 dtype of its inputs); camlab's in float64: measured |diff| <= 4e-7 over the
cases below, hence atol 2e-6. Spearman compares ranks, which match exactly (measured diff
<= 1.1e-16), hence atol 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from peer import digits_case, run_quantus

from camlab.metrics.explanation.correlation import SPECS, pearson, spearman

SPEC = {spec.name: spec for spec in SPECS}
PEARSON_ATOL = 2e-6
RANK_ATOL = 1e-12


def _compare(name: str, seed: int, call_batch_size: int = 64, **overrides):
    spec = SPEC[name]
    options = {**spec.options, **overrides, "call_batch_size": call_batch_size}
    model, images, labels, maps, masks = digits_case()
    expected = run_quantus(
        spec.quantus, spec.quantus_kwargs(options), model, images, labels, maps, masks,
        seed=seed, batch_size=call_batch_size,
    )  # fmt: skip
    got = spec.fn(model, images, maps, labels, seed=seed, **options)
    assert got.dtype == torch.float64 and got.shape == (len(images),)
    return got.numpy(), expected


def test_faithfulness_correlation_defaults():
    got, expected = _compare("faithfulness_correlation", seed=1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=PEARSON_ATOL)


@pytest.mark.parametrize(
    ("overrides", "call_batch_size", "atol"),
    [
        # one uniform value per image and run, drawn after that run's subsets
        ({"nr_runs": 20, "subset_size": 50, "perturb_baseline": "uniform"}, 4, PEARSON_ATOL),
        ({"nr_runs": 20, "subset_size": 50, "perturb_baseline": "mean",
          "similarity_func": "correlation_spearman"}, 64, RANK_ATOL),
        # a number draws no uniform values; abs on
        ({"nr_runs": 30, "subset_size": 100, "perturb_baseline": 0.5, "absolute": True}, 64,
         PEARSON_ATOL),
    ],
)  # fmt: skip
def test_faithfulness_correlation_options(overrides, call_batch_size, atol):
    got, expected = _compare("faithfulness_correlation", 5, call_batch_size, **overrides)
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("overrides", "call_batch_size"),
    [
        # Quantus's defaults (uniform baseline, Spearman, abs, softmax) on fewer, larger steps
        ({"features_in_step": 28, "nr_samples": 10}, 64),
        ({"features_in_step": 28, "nr_samples": 4}, 4),  # draws follow Quantus's call batches
        ({"features_in_step": 14, "nr_samples": 2, "perturb_baseline": "black"}, 64),
        ({"features_in_step": 56, "nr_samples": 3, "similarity_func": "correlation_pearson",
          "perturb_baseline": "mean"}, 64),
    ],
)  # fmt: skip
def test_monotonicity_correlation(overrides, call_batch_size):
    got, expected = _compare("monotonicity_correlation", 3, call_batch_size, **overrides)
    atol = PEARSON_ATOL if overrides.get("similarity_func") == "correlation_pearson" else RANK_ATOL
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


def test_seed_matters():
    model, images, labels, maps, _ = digits_case()
    fn = SPEC["faithfulness_correlation"].fn
    a, b, c = (fn(model, images, maps, labels, seed=s, nr_runs=10) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_similarities_match_scipy():
    rng = np.random.RandomState(0)
    a = rng.randint(0, 5, size=(4, 30)).astype(np.float64)  # many ties: average ranks
    b = rng.rand(4, 30)
    b[3] = 1.0  # constant row: NaN
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for i in range(3):
        assert spearman(ta, tb)[i].item() == pytest.approx(scipy.stats.spearmanr(a[i], b[i])[0])
        assert pearson(ta, tb)[i].item() == pytest.approx(scipy.stats.pearsonr(a[i], b[i])[0])
    assert torch.isnan(spearman(ta, tb)[3]) and torch.isnan(pearson(ta, tb)[3])

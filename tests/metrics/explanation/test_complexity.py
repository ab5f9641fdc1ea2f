"""Complexity metrics equal Quantus 0.6.0's per image (digits case), and hand-computed values.

Tolerances: on float32 maps Quantus sums (and takes logs) in float32, we in float64 after
reproducing its float32 values (the +1e-7 included); a pairwise float32 sum of 784 terms is off
by at most ~log2(784) * 6e-8 ~ 6e-7 relative, a ratio of two such by ~1.2e-6: rtol 2e-6
(observed <= 1.9e-7). Fed float64 maps, Quantus does the same float64 maths: rtol 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from peer import digits_case, run_quantus

from camlab.metrics.explanation.complexity import SPECS, complexity, sparseness

BY_NAME = {spec.name: spec for spec in SPECS}
OPTIONS = [{}, {"normalise": False, "absolute": False}]


def _maps(kind: str) -> torch.Tensor:
    """The digits case's maps: as they are, float64, signed (so ``abs`` matters; Complexity
    then takes logs of negatives, NaN), or quantised to 5 levels (ties)."""
    maps = digits_case()[3]
    return {
        "float32": maps,
        "float64": maps.double(),
        "signed": maps - 0.3,
        "ties": (maps * 4).round() / 4,
    }[kind]


@pytest.mark.parametrize("kind", ["float32", "float64", "signed", "ties"])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", list(BY_NAME))
def test_equals_quantus(name, options, kind):
    model, images, labels, _, _ = digits_case()
    maps = _maps(kind)
    spec = BY_NAME[name]
    options = {**spec.options, **options}
    # A copy: without normalise and abs Quantus changes the maps it is given in place.
    ref = run_quantus(spec.quantus, spec.quantus_kwargs(options), model, images, labels,
                      maps.clone())  # fmt: skip
    out = spec.fn(model, images, maps, labels, **options)
    assert out.shape == (len(images),) and out.dtype == torch.float64
    rtol = 2e-6 if maps.dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), ref, rtol=rtol, atol=0)
    if kind == "signed" and name == "complexity" and not options["absolute"]:
        assert torch.isnan(out).all()


def test_hand_computed():
    """2x2 maps (float64, so Quantus's 1e-7 is added exactly)."""
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    a = a.double()
    args = (None, torch.zeros(3, 1, 2, 2), a, None)
    e = 1e-7
    # Gini of sorted v: sum (2i - 5) v_i / (4 sum v), weights -3, -1, 1, 3; the e's cancel in
    # the numerator (weights sum to 0) but not in the denominator.
    gini = sparseness(*args, normalise=False)
    expected = [10 / (4 * (10 + 4 * e)), 3 / (4 * (1 + 4 * e)), 0.0]
    np.testing.assert_allclose(gini.numpy(), expected, rtol=1e-12, atol=1e-15)
    # Normalising by the batch max (4) scales the maps but not the 1e-7 added after it.
    gini = sparseness(*args)
    expected[:2] = [2.5 / (4 * (2.5 + 4 * e)), 0.75 / (4 * (0.25 + 4 * e))]
    np.testing.assert_allclose(gini.numpy(), expected, rtol=1e-12, atol=1e-15)
    # Entropy of p = a / sum |a| with Quantus's log(p + 1e-12).
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    entropy = [-(p * (p + 1e-12).log()).sum().item(), -math.log(1 + 1e-12), math.log(4)]
    np.testing.assert_allclose(complexity(*args).numpy(), entropy, rtol=1e-11)


def test_specs():
    assert [s.name for s in SPECS] == ["sparseness", "complexity"]
    for spec in SPECS:
        assert spec.options == {"normalise": True, "absolute": True} and spec.needs == ()
        assert spec.quantus_kwargs(spec.options) == {"normalise": True, "abs": True}

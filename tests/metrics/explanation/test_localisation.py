"""Localisation metrics equal Quantus 0.6.0's per image (digits case), and hand-computed values.

Tolerances: the rank metrics count pixels (exact, compared with ``assert_array_equal``); AUC is
float64 on both sides (sklearn's trapezoids vs. our mid-rank sum: rtol 1e-12). The mass metrics
sum float32 maps in float32 in Quantus but in float64 here; a pairwise float32 sum of 784 terms
is off by at most ~log2(784) * 6e-8 ~ 6e-7 relative, a ratio of two such by ~1.2e-6: rtol 2e-6
(observed <= 2.2e-7). Fed float64 maps, Quantus does the same float64 maths: rtol 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peer import digits_case, run_quantus

from camlab.metrics.explanation import localisation
from camlab.metrics.explanation.localisation import (
    SPECS,
    attribution_localisation,
    auc,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)

BY_NAME = {spec.name: spec for spec in SPECS}
EXACT = ("relevance_rank_accuracy", "top_k_intersection")
FLOAT32_SUMS = ("relevance_mass_accuracy", "attribution_localisation")

# (metric, non-default options); TopKIntersection's default k=1000 exceeds 28*28 (see below).
CASES = [
    ("relevance_mass_accuracy", {}),
    ("relevance_mass_accuracy", {"normalise": False, "absolute": True}),
    ("relevance_rank_accuracy", {}),
    ("relevance_rank_accuracy", {"normalise": False, "absolute": True}),
    ("top_k_intersection", {"k": 100}),
    ("top_k_intersection", {"k": 50, "concept_influence": True, "absolute": True}),
    ("attribution_localisation", {}),
    ("attribution_localisation", {"weighted": True, "positive_attributions": True,
                                  "absolute": False, "max_size": 0.1}),
    # Quantus's weighted "data size" is its batch chunk less two images: chunks of 4 and 2.
    ("attribution_localisation", {"weighted": True, "call_batch_size": 4, "normalise": False}),
    ("auc", {}),
    ("auc", {"normalise": False, "absolute": True}),
]  # fmt: skip


def _maps(kind: str) -> torch.Tensor:
    """The digits case's maps: as they are, float64, signed (so ``abs`` matters), or quantised
    to 5 levels (big tie groups, straddling the rank metrics' cut-offs)."""
    maps = digits_case()[3]
    return {
        "float32": maps,
        "float64": maps.double(),
        "signed": maps - 0.3,
        "ties": (maps * 4).round() / 4,
    }[kind]


def _check(name: str, options: dict, maps: torch.Tensor, masks: torch.Tensor) -> None:
    model, images, labels, _, _ = digits_case()
    spec = BY_NAME[name]
    options = {**spec.options, **options}
    ref = run_quantus(
        spec.quantus, spec.quantus_kwargs(options), model, images, labels, maps.clone(), masks,
        batch_size=options.get("call_batch_size", 64),
    )  # fmt: skip
    out = spec.fn(model, images, maps, labels, masks=masks, **options)
    assert out.shape == (len(images),) and out.dtype == torch.float64
    if name in EXACT:
        np.testing.assert_array_equal(out.numpy(), ref)
    else:
        float32 = maps.dtype == torch.float32 and name in FLOAT32_SUMS
        # Quantus's float32 sums: ~1e-7 absolute, which a signed map's near-zero mass (the
        # total cancels) turns into 1e-5 relative under ATEN_CPU_CAPABILITY=default / avx2.
        tolerance = {"rtol": 2e-6, "atol": 1e-6} if float32 else {"rtol": 1e-12, "atol": 0}
        np.testing.assert_allclose(out.numpy(), ref, **tolerance)


@pytest.mark.parametrize("kind", ["float32", "float64", "signed", "ties"])
@pytest.mark.parametrize(("name", "options"), CASES)
def test_equals_quantus(name, options, kind):
    _check(name, options, _maps(kind), digits_case()[4])


@pytest.mark.parametrize(("name", "options"), CASES)
def test_empty_and_full_masks_equal_quantus(name, options):
    """Empty mask: NaN everywhere; full mask: 1 for the mass/rank metrics, NaN for AUC."""
    masks = digits_case()[4].clone()
    masks[0], masks[1] = False, True
    _check(name, options, _maps("float32"), masks)


def test_ties_straddle_the_cutoff():
    """The ties case really tests tie order: some image's K-th ranked value is shared by
    pixels in and out of the mask, and a stable sort would score it differently from NumPy's."""
    maps, masks = _maps("ties").flatten(1), digits_case()[4].flatten(1)
    size = masks.sum(-1)
    kth = maps.sort(-1, descending=True).values[torch.arange(len(maps)), size - 1]
    tied = maps == kth[:, None]
    assert ((tied & masks).any(-1) & (tied & ~masks).any(-1)).any()
    model, images, labels, _, _ = digits_case()
    order = torch.sort(maps, dim=-1, descending=True, stable=True).indices
    top = torch.arange(maps.shape[-1]) < size[:, None]
    stable = (masks.gather(-1, order) & top).sum(-1).double() / size.double()
    ours = relevance_rank_accuracy(model, images, _maps("ties"), labels, masks=digits_case()[4])
    assert not torch.equal(stable, ours)


def test_top_k_default_k_too_large_like_quantus():
    model, images, labels, maps, masks = digits_case()
    with pytest.raises(ValueError, match=r"k=1000 must be smaller than the images' 784 pixels"):
        top_k_intersection(model, images, maps, labels, masks=masks)
    with pytest.raises(ValueError, match="smaller than input size"):
        run_quantus("TopKIntersection", {}, model, images, labels, maps.clone(), masks)


def test_hand_computed():
    """A 4x4 map, mask = top-left 2x2 holding 4, 3, 2, 1; outside 1.5 (or a tied 1) and zeros."""
    a = torch.zeros(1, 4, 4, dtype=torch.float64)
    a[0, :2, :2] = torch.tensor([[4.0, 3.0], [2.0, 1.0]])
    a[0, 3, 3] = 1.5
    s = torch.zeros(1, 4, 4, dtype=torch.bool)
    s[0, :2, :2] = True
    x = torch.zeros(1, 1, 4, 4)
    args = (None, x, a, torch.zeros(1, dtype=torch.long))

    def close(value, expected):
        np.testing.assert_allclose(value.numpy(), [expected], rtol=1e-12)

    close(relevance_mass_accuracy(*args, masks=s), 10 / 11.5)
    close(relevance_rank_accuracy(*args, masks=s), 3 / 4)  # top 4: 4, 3, 2, 1.5
    close(top_k_intersection(*args, masks=s, k=3), 1.0)
    close(top_k_intersection(*args, masks=s, k=5), 4 / 5)
    close(top_k_intersection(*args, masks=s, k=5, concept_influence=True), 4 / 5 * 16 / 4)
    close(attribution_localisation(*args, masks=s), 2.5 / (2.875 + 1e-9))  # after / max 4
    # 3 images x 3 channels: Quantus's size ratio is 4 / ((3 - 2) * 3 * 16).
    x3, a3, s3 = x.expand(3, 3, 4, 4), a.expand(3, 4, 4), s.expand(3, 4, 4)
    weighted = attribution_localisation(None, x3, a3, None, masks=s3, weighted=True)
    np.testing.assert_allclose(weighted.numpy(), [10 / 11.5 * 4 / 48] * 3, rtol=1e-9)
    # AUC: 4 positives x 12 negatives; 1 loses only to 1.5 -> 47/48, half a win if tied at 1.
    close(auc(*args, masks=s), 47 / 48)
    a[0, 3, 3] = 1.0
    close(auc(*args, masks=s), 47.5 / 48)
    # Normalising by the max (4) changes none of them; an empty mask gives NaN.
    assert torch.isnan(relevance_mass_accuracy(*args, masks=torch.zeros_like(s))).all()


def test_specs():
    assert [s.name for s in SPECS] == [
        "relevance_mass_accuracy", "relevance_rank_accuracy", "top_k_intersection",
        "attribution_localisation", "auc",
    ]  # fmt: skip
    for spec in SPECS:
        assert spec.needs == ("masks",) and not spec.random
        kwargs = spec.quantus_kwargs(spec.options)
        assert kwargs["abs"] == spec.options["absolute"] and "call_batch_size" not in kwargs
    assert localisation.SPECS is SPECS

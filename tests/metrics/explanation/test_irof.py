"""IROF equals Quantus 0.6.0 per image.

Segments, their order, the perturbed images and the model scores are Quantus's own bit for bit
(same scikit-image call, NumPy's float32 segment means and batch mean, same float32 forwards),
and the curve and its trapezoid are a handful of float64 operations: measured equal to the
last bit on every case below. rtol 1e-9 leaves room for BLAS / summation-order differences
only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peer import digits_case, run_quantus

from camlab.metrics.explanation.irof import SPECS

SPEC = SPECS[0]


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    # Quantus 0.6.0's calculate_auc calls np.trapz, which NumPy 2.4 removed (np.trapezoid).
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


@pytest.mark.parametrize(
    ("overrides", "call_batch_size"),
    [
        ({}, 64),  # slic, batch-mean baseline, softmax
        # call batches of 4: their own padding (largest segment count) and batch-wide min
        ({"perturb_baseline": "black"}, 4),
        ({"perturb_baseline": "uniform"}, 64),  # a [B, C, H, W] draw per step
        ({"segmentation_method": "felzenszwalb"}, 64),
    ],
)
def test_irof(overrides, call_batch_size):
    options = {**SPEC.options, **overrides, "call_batch_size": call_batch_size}
    model, images, labels, maps, masks = digits_case()
    expected = run_quantus(
        "IROF", SPEC.quantus_kwargs(options), model, images, labels, maps, masks, seed=2,
        batch_size=call_batch_size,
    )  # fmt: skip
    got = SPEC.fn(model, images, maps, labels, seed=2, **options)
    assert got.dtype == torch.float64 and got.shape == (len(images),)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=0)

"""MPRT and Random Logit equal Quantus 0.6.0 per image (and per layer).

Tolerance: Spearman ranks the same float32 maps, so it agrees to 1e-16; Quantus computes
Pearson (scipy) and SSIM (skimage) in float32 (measured differences up to 9e-8 against camlab's
float64): rtol 1e-5 with atol 1e-6, as the correlations near 0 have no relative scale. NaN
(a randomised model's constant Grad-CAM) must match NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from peer import digits_case, explain_gradcam, quantus_explain, run_quantus

from camlab.metrics.explanation import randomisation

SPECS = {spec.name: spec for spec in randomisation.SPECS}
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions: one thread is several times faster than two on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _both(name: str, call_batch_size: int = 64, **options):
    """(camlab, Quantus) per-image scores of metric ``name`` on the digits case."""
    spec = SPECS[name]
    options = {**spec.options, "call_batch_size": call_batch_size, **options}
    model, images, labels, maps, _ = digits_case()
    ours = spec.fn(model, images, maps, labels, explain=explain_gradcam, seed=0, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's constant-input warnings
        theirs = run_quantus(
            spec.quantus, spec.quantus_kwargs(options), model, images, labels, maps,
            seed=0, explain=True, batch_size=call_batch_size,
        )  # fmt: skip
    assert ours.dtype == torch.float64 and ours.shape == (len(images),)
    return ours.numpy(), theirs


@pytest.mark.parametrize(
    "options",
    [
        {},
        dict(layer_order="independent", similarity_func="correlation_pearson"),
        dict(layer_order="bottom_up", random_seed=7, return_last_correlation=True,
             skip_layers=True, normalise=False, absolute=False),
    ],
)  # fmt: skip
def test_mprt_equals_quantus(options):
    ours, theirs = _both("mprt", **options)
    assert np.isfinite(theirs).any()
    np.testing.assert_allclose(ours, theirs, **TOL)  # NaN where Quantus has NaN


def test_mprt_layers_equal_quantus_and_leave_the_model_alone():
    import quantus

    model, images, labels, maps, _ = digits_case()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ours = randomisation.mprt_layers(model, images, maps, labels, explain=explain_gradcam)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.items())
    assert torch.equal(torch.get_rng_state(), rng)  # the seeding stays inside
    kwargs = SPECS["mprt"].quantus_kwargs(SPECS["mprt"].options)
    kwargs["return_average_correlation"] = False  # Quantus's default: the per-layer dict
    metric = quantus.MPRT(disable_warnings=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(
            model=model, x_batch=images.numpy(), y_batch=labels.numpy(),
            a_batch=maps[:, None].numpy(), explain_func=quantus_explain, device="cpu",
        )  # fmt: skip
    layers = ["original", "fc", "features.4", "features.2", "features.0"]  # top down
    assert list(ours) == list(theirs) == layers
    for layer, scores in theirs.items():
        np.testing.assert_allclose(ours[layer].numpy(), np.asarray(scores), **TOL)


@pytest.mark.parametrize(
    ("options", "call_batch_size"),
    [
        (dict(num_classes=10), 64),
        (dict(num_classes=10, similarity_func="correlation_spearman", random_seed=5,
              absolute=True), 64),
        # Two Quantus batches: each re-seeds, and normalises its own re-explained maps.
        (dict(num_classes=10, similarity_func="correlation_pearson"), 4),
    ],
)  # fmt: skip
def test_random_logit_equals_quantus(options, call_batch_size):
    ours, theirs = _both("random_logit", call_batch_size, **options)
    assert np.isfinite(theirs).all()
    np.testing.assert_allclose(ours, theirs, **TOL)


def test_mprt_runs_inside_inference_mode():
    # Lightning's test loop runs in inference mode; the randomised copies must still take
    # gradients (Grad-CAM), and give the same numbers.
    model, images, labels, maps, _ = digits_case()
    options = {"layer_order": "bottom_up"}
    expected = randomisation.mprt(model, images, maps, labels, explain=explain_gradcam, **options)
    with torch.inference_mode():
        got = randomisation.mprt(model, images.clone(), maps.clone(), labels.clone(),
                   explain=explain_gradcam, **options)  # fmt: skip
    torch.testing.assert_close(got, expected, equal_nan=True, rtol=0, atol=0)

"""PxAP's compiled histogram pass bins every score exactly like np.histogram."""

import numpy as np
import pytest
import torch

from camlab.metrics import PxAP, cam_thresholds


def _edge_scores(interval: float, dtype, rng: np.random.Generator, shape) -> np.ndarray:
    """Scores on, just below and just above every bin edge below 1, plus 0 and 1."""
    taus = cam_thresholds(interval).astype(dtype)
    one = np.array([1.0], dtype=dtype)
    pool = np.concatenate(
        [taus, np.nextafter(taus, one), np.nextafter(taus, -one), [0.0, 1.0], rng.random(50)]
    ).astype(dtype)
    pool = pool[(pool >= 0) & (pool <= 1)]
    return rng.choice(pool, size=shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("interval", [0.01, 0.001, 0.003])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
def test_histograms_equal_numpy_on_bin_edges(dtype, interval, mask_dtype):
    rng = np.random.default_rng(int(interval * 1e4))
    scores = _edge_scores(interval, dtype, rng, (6, 17, 13))
    masks = rng.random(scores.shape) < 0.4
    ignore = rng.random(scores.shape) < 0.2
    metric = PxAP(cam_curve_interval=interval)
    metric.update(
        torch.from_numpy(scores),
        torch.from_numpy(masks).to(mask_dtype),
        torch.from_numpy(ignore).to(mask_dtype),
    )
    edges = np.append(cam_thresholds(interval), [1.0, 2.0, 3.0])
    pos = np.histogram(scores[masks], bins=edges)[0]
    neg = np.histogram(scores[~masks & ~ignore], bins=edges)[0]
    assert metric.pos_hist.tolist() == pos.tolist()
    assert metric.neg_hist.tolist() == neg.tolist()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_scores_bin_like_their_float64_values(dtype):
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(_edge_scores(0.01, np.float64, rng, (4, 9, 11))).to(dtype)
    masks = torch.from_numpy(rng.random(scores.shape) < 0.5)
    metric = PxAP(cam_curve_interval=0.01)
    metric.update(scores, masks)
    wide = scores.double().numpy()
    edges = np.append(cam_thresholds(0.01), [1.0, 2.0, 3.0])
    assert metric.pos_hist.tolist() == np.histogram(wide[masks.numpy()], bins=edges)[0].tolist()
    assert metric.neg_hist.tolist() == np.histogram(wide[~masks.numpy()], bins=edges)[0].tolist()

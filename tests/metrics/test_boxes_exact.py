"""The fast per-level box extraction must equal the per-tau OpenCV oracle bit for bit."""

import numpy as np
import oracle
import pytest
from cases import KINDS, dataset, gt_boxes, scoremap

from camlab.metrics import best_iou, box_iou, boxes_at_threshold, cam_thresholds, max_iou_curve


def test_iou_check_value_from_the_note():
    assert box_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == 8 / 27
    assert oracle.iou_matrix([[1, 2, 5, 6]], [[3, 1, 4, 5]])[0, 0] == 8 / 27


def test_iou_degenerate_union_is_zero():
    # x1 < x0 makes the areas negative: the reference maps a non-positive union to 0.
    assert box_iou(np.array([[5, 0, 0, 0]]), np.array([[5, 0, 0, 0]]))[0, 0] == 0.0


@pytest.mark.parametrize("multi", [True, False])
@pytest.mark.parametrize("size,n,interval,seed", [(32, 200, 0.01, 0), (48, 60, 0.001, 1)])
def test_curve_equals_oracle_on_varied_maps(multi, size, n, interval, seed):
    taus = cam_thresholds(interval)
    maps, boxes = dataset(n, size, seed)
    for i, (m, g) in enumerate(zip(maps, boxes, strict=True)):
        expected = oracle.image_scores(m, g, taus, multi)
        got = max_iou_curve(m, g, taus, multi)
        assert np.array_equal(got, expected), f"map {i} ({KINDS[i % len(KINDS)]}) differs"


@pytest.mark.parametrize("multi", [True, False])
def test_curve_equals_oracle_at_224(multi):
    taus = cam_thresholds(0.001)
    rng = np.random.default_rng(7)
    for kind in ("smooth7", "smooth14", "ring", "border"):
        m, g = scoremap(kind, rng, 224), gt_boxes(rng, 224)
        assert np.array_equal(
            max_iou_curve(m, g, taus, multi), oracle.image_scores(m, g, taus, multi)
        )


def test_float32_maps_quantise_in_their_own_dtype():
    taus = cam_thresholds(0.01)
    maps, boxes = dataset(20, 40, 3)
    for m, g in zip(maps, boxes, strict=True):
        m32 = m.astype(np.float32)
        assert np.array_equal(
            max_iou_curve(m32, g, taus, True), oracle.image_scores(m32, g, taus, True)
        )


@pytest.mark.parametrize("multi", [True, False])
def test_plain_functions_equal_oracle(multi):
    rng = np.random.default_rng(11)
    maps, boxes = dataset(40, 40, 11)
    for m, g in zip(maps, boxes, strict=True):
        tau = float(rng.choice(cam_thresholds(0.001)))
        expected = np.array(oracle.boxes_at(m, tau, multi))
        assert np.array_equal(boxes_at_threshold(m, tau, multi), expected)
        assert best_iou(m, g, tau, multi) == oracle.iou_matrix(expected, g).max()


def test_empty_foreground_gives_the_zero_box():
    m = np.zeros((16, 16))
    assert boxes_at_threshold(m, 0.0, True).tolist() == [[0, 0, 0, 0]]
    # The zero box still overlaps a GT box at the origin: IoU 1 / 4.
    assert best_iou(m, np.array([[0, 0, 1, 1]]), 0.5, False) == 0.25


def test_box_end_is_exclusive_and_clipped():
    m = np.zeros((10, 10))
    m[2:5, 3:7] = 1.0  # rows 2-4, cols 3-6
    m[7:, 8:] = 0.5  # touches the bottom-right corner
    assert boxes_at_threshold(m, 0.6, True).tolist() == [[3, 2, 7, 5]]
    assert sorted(boxes_at_threshold(m, 0.1, True).tolist()) == [[3, 2, 7, 5], [8, 7, 9, 9]]

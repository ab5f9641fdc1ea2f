"""The compiled level sweeps behind max_iou_curve against the per-tau OpenCV oracle.

Every map here is scored by ``oracle.image_scores`` (one OpenCV call chain per tau). To keep the
folder fast, :func:`oracle_curve` runs the oracle once per distinct cut level
``int(tau * max(s8))`` (the only way tau enters the oracle) and repeats that result for the
other taus of the level.
"""

import numpy as np
import oracle
import pytest
from cases import ALL_KINDS, EXTRA_KINDS, dataset, gt_boxes, scoremap
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from opencv_curve import max_iou_curve_opencv

from camlab.metrics import cam_thresholds, max_iou_curve
from camlab.metrics.maxtree import level_ious
from camlab.metrics.thresholds import quantize


def oracle_curve(scoremap_, gt, taus, multi):
    """``oracle.image_scores`` over taus, evaluated once per distinct cut level."""
    top = int(quantize(scoremap_).max())
    levels = np.array([int(t * top) for t in taus])  # the oracle's int(tau * np.max(image))
    _, first, inverse = np.unique(levels, return_index=True, return_inverse=True)
    return oracle.image_scores(scoremap_, gt, [taus[i] for i in first], multi)[inverse]


def assert_equal_to_oracle(maps, boxes, taus, multi, label=""):
    for i, (m, g) in enumerate(zip(maps, boxes, strict=True)):
        got = max_iou_curve(m, g, taus, multi)
        expected = oracle_curve(m, g, taus, multi)
        bad = np.flatnonzero(got != expected)
        assert bad.size == 0, f"{label} map {i} {m.shape}: taus {taus[bad[:5]]} differ"


def test_oracle_curve_shortcut_is_the_oracle():
    taus = cam_thresholds(0.01)
    maps, boxes = dataset(12, 24, 40, ALL_KINDS)
    for m, g in zip(maps, boxes, strict=True):
        for multi in (True, False):
            expected = oracle.image_scores(m, g, taus, multi)
            assert np.array_equal(oracle_curve(m, g, taus, multi), expected)


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
@pytest.mark.parametrize("interval", [0.01, 0.001])
@pytest.mark.parametrize("shape", [(32, 32), (24, 41), (45, 17), (1, 9), (7, 1)])
def test_every_kind_and_shape_equals_oracle(multi, interval, shape):
    # 2 maps of each kind (28), 1-3 GT boxes each; thin shapes put every pixel on the border.
    seed = 1000 * shape[0] + shape[1] + int(interval * 1e4)
    maps, boxes = dataset(2 * len(ALL_KINDS), shape, seed, ALL_KINDS)
    assert_equal_to_oracle(maps, boxes, cam_thresholds(interval), multi, str(shape))


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
def test_larger_maps_with_many_holes_equal_oracle(multi):
    taus = cam_thresholds(0.001)
    rng = np.random.default_rng(5)
    kinds = ("noisy", "border", "islands") + EXTRA_KINDS
    maps = [scoremap(kind, rng, (96, 128)) for kind in kinds]
    boxes = [gt_boxes(rng, (96, 128), k=5) for _ in kinds]
    assert_equal_to_oracle(maps, boxes, taus, multi)


def random_small_map(rng):
    """5x5 to 16x16 with 2, 3, 5 or 256 distinct values: ties, diagonal contacts, holes."""
    h, w = rng.integers(5, 17, 2)
    n_values = int(rng.choice([2, 3, 5, 256]))
    values = rng.integers(0, n_values, (h, w))
    return values / max(n_values - 1, 1)


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
def test_random_small_maps_equal_oracle(multi):
    rng = np.random.default_rng(17)
    taus = cam_thresholds(0.001)
    maps = [random_small_map(rng) for _ in range(300)]
    boxes = [gt_boxes(rng, m.shape, k=int(rng.integers(1, 6))) for m in maps]
    assert_equal_to_oracle(maps, boxes, taus, multi)


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
def test_every_oracle_box_is_found_at_every_level(multi):
    # Scoring against each oracle box alone pins the boxes themselves, not just the max IoU.
    rng = np.random.default_rng(23)
    for _ in range(120):
        m = random_small_map(rng)
        s8 = quantize(m)
        top = int(s8.max())
        for v in np.unique(s8[s8 > 0]).tolist():
            tau = (v - 0.5) / top  # the oracle's cut level int(tau * top) is v - 1
            need = np.zeros(257, dtype=bool)
            need[v] = True
            for box in oracle.boxes_at(m, tau, multi):
                assert level_ious(s8, np.array([box]), need, multi)[v] == 1.0, (s8, v, box)


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
def test_every_level_up_to_the_maximum_equals_oracle(multi):
    # Levels between present values too: their foreground is that of the next present value.
    rng = np.random.default_rng(29)
    for _ in range(60):
        m = random_small_map(rng)
        s8 = quantize(m)
        top = int(s8.max())
        g = gt_boxes(rng, m.shape, k=3)
        need = np.zeros(257, dtype=bool)
        need[1 : top + 1] = True
        got = level_ious(s8, g, need, multi)
        for v in range(1, top + 1):
            boxes = oracle.boxes_at(m, (v - 0.5) / top, multi)  # cut level v - 1
            assert got[v] == oracle.iou_matrix(boxes, g).max(), (s8, v)


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.sampled_from([0, 1, 128, 255]),
    ),
    st.integers(0, 2**32 - 1),
)
def test_hypothesis_small_maps_equal_oracle(s8, seed):
    m = s8 / 255.0
    g = gt_boxes(np.random.default_rng(seed), m.shape, k=3)
    for multi in (True, False):
        assert_equal_to_oracle([m], [g], cam_thresholds(0.01), multi)


def test_v1_ties_go_to_the_contour_opencv_returns_first():
    # Two 1-pixel components (area 0) and two equal squares: OpenCV lists the later one in
    # raster order first, and max(key=contourArea) keeps it.
    taus = cam_thresholds(0.1)
    m = np.zeros((12, 12))
    m[1, 1] = m[8, 9] = 1.0
    m[2:4, 5:7] = m[7:9, 2:4] = 0.5
    for g in ([[1, 1, 2, 2]], [[9, 8, 10, 9]], [[5, 2, 7, 4]], [[2, 7, 4, 9]]):
        g = np.array(g)
        got = max_iou_curve(m, g, taus, False)
        assert np.array_equal(got, oracle.image_scores(m, g, taus, False))
    later = max_iou_curve(m, np.array([[9, 8, 10, 9]]), taus, False)
    assert later[taus < 0.5].tolist() == [0.0] * 5 and later[taus >= 0.5].tolist() == [1.0] * 5


def test_hole_box_is_the_hole_grown_by_one():
    # A 5x5 ring around a 1-pixel hole at (4, 4): hole contour box (3, 3)-(5, 5), end + 1.
    m = np.zeros((9, 9))
    m[2:7, 2:7] = 1.0
    m[4, 4] = 0.0
    need = np.zeros(257, dtype=bool)
    need[255] = True
    assert level_ious(quantize(m), np.array([[3, 3, 6, 6]]), need, True)[255] == 1.0
    assert level_ious(quantize(m), np.array([[2, 2, 7, 7]]), need, True)[255] == 1.0
    assert level_ious(quantize(m), np.array([[3, 3, 6, 6]]), need, False)[255] < 1.0


@pytest.mark.parametrize("multi", [True, False], ids=["V2", "v1"])
def test_opencv_fallback_path_still_equals_oracle(multi):
    taus = cam_thresholds(0.01)
    maps, boxes = dataset(14, (20, 28), 31, ALL_KINDS)
    for m, g in zip(maps, boxes, strict=True):
        assert np.array_equal(
            max_iou_curve_opencv(m, g, taus, multi), oracle_curve(m, g, taus, multi)
        )

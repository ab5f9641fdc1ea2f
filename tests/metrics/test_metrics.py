"""torchmetrics classes: equality with the oracle, accumulation and constant-size state."""

import numpy as np
import oracle
import pytest
import torch
from cases import dataset

from camlab.metrics import LocalizationAccuracy, MaxBoxAcc, PxAP


def _as_torch(maps, boxes):
    return torch.from_numpy(np.stack(maps)), [torch.from_numpy(b) for b in boxes]


@pytest.mark.parametrize(
    "multi,deltas", [(True, (30, 50, 70)), (False, (50,)), (True, (10, 90)), (False, (30, 50, 70))]
)
def test_max_box_acc_equals_oracle(multi, deltas):
    maps, boxes = dataset(60, 32, 5)
    metric = MaxBoxAcc(cam_curve_interval=0.01, iou_thresholds=deltas, multi_contour=multi)
    metric.update(*_as_torch(maps, boxes))
    out = metric.compute()
    mean, maxima, best, curve = oracle.max_box_acc(maps, boxes, 0.01, deltas, multi)
    assert out["max_box_acc"].item() == mean
    assert torch.equal(out["curve"], torch.from_numpy(curve))
    taus = oracle.thresholds(0.01)
    for d, mx, b in zip(deltas, maxima, best, strict=True):
        assert out[f"max_box_acc@{d}"].item() == mx
        assert out[f"best_threshold@{d}"].item() == taus[b]
    assert torch.equal(out["thresholds"], torch.from_numpy(np.array(taus)))


def test_accumulation_over_batches_equals_one_update_and_state_is_constant():
    maps, boxes = dataset(30, 32, 8)
    whole = MaxBoxAcc(cam_curve_interval=0.01)
    whole.update(*_as_torch(maps, boxes))
    parts = MaxBoxAcc(cam_curve_interval=0.01)
    sizes = [tensor.numel() for tensor in (parts.num_correct, parts.num_images)]
    for lo, hi in [(0, 7), (7, 8), (8, 30)]:
        parts.update(*_as_torch(maps[lo:hi], boxes[lo:hi]))
    assert [tensor.numel() for tensor in (parts.num_correct, parts.num_images)] == sizes
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _masks(maps, seed):
    rng = np.random.default_rng(seed)
    masks = [m > rng.uniform(0.2, 0.8) for m in maps]
    masks[0][:] = True  # a map with no negatives
    ignores = [rng.random(m.shape) < 0.1 for m in maps]
    return masks, ignores


@pytest.mark.parametrize("with_ignore", [False, True])
@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_pxap_equals_oracle(with_ignore, interval):
    maps, _ = dataset(40, 32, 9)
    masks, ignores = _masks(maps, 9)
    metric = PxAP(cam_curve_interval=interval)
    for lo, hi in [(0, 15), (15, 40)]:
        metric.update(
            torch.from_numpy(np.stack(maps[lo:hi])),
            torch.from_numpy(np.stack(masks[lo:hi])),
            torch.from_numpy(np.stack(ignores[lo:hi])) if with_ignore else None,
        )
    out = metric.compute()
    value, precision, recall = oracle.pxap(maps, masks, ignores if with_ignore else None, interval)
    assert out["pxap"].item() == value
    defined = ~np.isnan(precision)
    assert torch.equal(out["precision"][defined], torch.from_numpy(precision[defined]))
    assert torch.equal(out["recall"], torch.from_numpy(recall))


def test_pxap_state_size_does_not_depend_on_n():
    metric = PxAP(cam_curve_interval=0.01)
    sizes = (metric.pos_hist.numel(), metric.neg_hist.numel())
    maps, _ = dataset(12, 24, 2)
    masks, _ = _masks(maps, 2)
    metric.update(torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks)))
    assert (metric.pos_hist.numel(), metric.neg_hist.numel()) == sizes == (102, 102)


@pytest.mark.parametrize("value", [0.0, 0.42, 1.0])
def test_pxap_of_a_constant_map_is_the_positive_fraction(value):
    rng = np.random.default_rng(int(value * 100))
    masks = torch.from_numpy(rng.random((3, 20, 20)) < 0.3)
    metric = PxAP()
    metric.update(torch.full((3, 20, 20), value, dtype=torch.float64), masks)
    expected = 100 * masks.double().mean().item()
    assert metric.compute()["pxap"].item() == pytest.approx(expected, rel=1e-12)


def test_score_of_exactly_one_lands_in_the_one_to_two_bin():
    metric = PxAP(cam_curve_interval=0.1)
    metric.update(torch.ones(1, 2, 2, dtype=torch.float64), torch.ones(1, 2, 2))
    assert metric.pos_hist.tolist() == [0] * 10 + [4, 0]


@pytest.mark.parametrize(
    "bad,needle", [(1.5, "max=1.5"), (-0.25, "min=-0.25"), (float("nan"), "NaN=True")]
)
def test_out_of_range_scoremaps_raise(bad, needle):
    maps = torch.zeros(2, 8, 8)
    maps[1, 3, 3] = bad
    for metric, args in [
        (MaxBoxAcc(), ([torch.tensor([[0, 0, 1, 1]])] * 2,)),
        (PxAP(), (torch.ones(2, 8, 8),)),
    ]:
        with pytest.raises(ValueError, match=needle.replace("+", r"\+")):
            metric.update(maps, *args)


def test_localization_accuracy_fixed_threshold():
    maps, boxes = dataset(40, 32, 12)
    rng = np.random.default_rng(12)
    logits = torch.from_numpy(rng.normal(size=(40, 10)))
    labels = torch.from_numpy(rng.integers(0, 10, 40))
    metric = LocalizationAccuracy(cam_threshold=0.2, iou_threshold=0.5, topk=(1, 5))
    metric.update(logits, labels, *_as_torch(maps, boxes))
    out = metric.compute()
    located = np.array(
        [
            oracle.iou_matrix(oracle.boxes_at(m, 0.2, False), b).max() >= 0.5
            for m, b in zip(maps, boxes, strict=True)
        ]
    )
    ranked = np.argsort(-logits.numpy(), axis=1)
    for k in (1, 5):
        in_topk = (ranked[:, :k] == labels.numpy()[:, None]).any(axis=1)
        assert out[f"top{k}_cls"].item() == in_topk.sum() * 100.0 / 40
        assert out[f"top{k}_loc"].item() == (in_topk & located).sum() * 100.0 / 40
    assert out["gt_known_loc"].item() == located.sum() * 100.0 / 40
    assert 0 < located.sum() < 40  # the check must be able to fail either way

"""ValLocalization: metrics logged each validation epoch, equal to an offline evaluation."""

import pytest
import torch
from cb_helpers import make_data, make_model, offline_metrics, read_events

from camlab.callbacks import ValLocalization

NAMES = (
    "val/max_box_acc_v2", "val/max_box_acc", "val/top1_loc", "val/gt_known_loc",
    "val/max_box_acc_threshold", "val/top1_loc_at_best_tau", "val/gt_known_loc_at_best_tau",
)  # fmt: skip
PERCENT = ("val/acc", "train/acc") + tuple(n for n in NAMES if "threshold" not in n)


def test_scalars_logged_and_monitorable(fitted):
    root, trainer, _ = fitted
    events = read_events(root / "tb" / "run")
    for name in NAMES:
        assert name in trainer.callback_metrics
        assert [e.step for e in events.Scalars(name)] == [3, 7]  # end of epochs 1 and 2
        assert 0 <= float(trainer.callback_metrics[name]) <= 100
    # ModelCheckpoint monitored val/max_box_acc_v2: it saw the value at each epoch end.
    best = trainer.checkpoint_callback.best_model_score
    assert best is not None
    assert float(best) == pytest.approx(max(e.value for e in events.Scalars(NAMES[0])))


def test_values_equal_offline_evaluation(fitted):
    root, trainer, _ = fitted
    expected = offline_metrics(root / "ckpt" / "last.ckpt", make_data())
    events = read_events(root / "tb" / "run")
    for name in (*NAMES, "val/acc"):
        assert float(trainer.callback_metrics[name]) == pytest.approx(expected[name], abs=1e-4)
        assert events.Scalars(name)[-1].value == pytest.approx(expected[name], abs=1e-4)
    # At the best threshold GT-known Loc is MaxBoxAcc v1 itself (same box, same IoU test).
    assert expected["val/gt_known_loc_at_best_tau"] == pytest.approx(expected["val/max_box_acc"])


def test_accuracy_and_localization_in_percent(fitted):
    """One unit on every chart: classification accuracy in percent like the box metrics, so
    Top-1 Loc (correct class *and* box) never exceeds the accuracy it is a part of."""
    root, _, _ = fitted
    events = read_events(root / "tb" / "run")
    values = {name: [e.value for e in events.Scalars(name)] for name in PERCENT}
    for name, series in values.items():
        assert all(0 <= v <= 100 for v in series), name
    # 32 val images: an accuracy is a multiple of 100/32 (a fraction would be a multiple of 1/32).
    assert all(
        v * 32 / 100 == pytest.approx(round(v * 32 / 100), abs=1e-3) for v in values["val/acc"]
    )
    assert max(values["val/acc"]) > 1  # 28% measured; a fraction would stay <= 1
    for acc, loc in zip(values["val/acc"], values["val/top1_loc_at_best_tau"], strict=True):
        assert loc <= acc + 1e-6


def test_top1_loc_at_best_tau_counts_only_correct_classes():
    """MaxBoxAccTop1 on hand-made maps: a perfect box counts for Top-1 Loc only when the class
    is right; GT-known Loc and MaxBoxAcc v1 ignore the class."""
    from camlab.metrics.wsol import MaxBoxAccTop1

    maps = torch.zeros(4, 32, 32, dtype=torch.float64)
    maps[:, 8:16, 8:16] = 1.0
    boxes = [torch.tensor([[8, 8, 15, 15]])] * 3 + [torch.tensor([[20, 20, 31, 31]])]
    metric = MaxBoxAccTop1(0.01)
    metric.update(maps, boxes, torch.tensor([True, False, True, True]))
    out = metric.compute()
    assert float(out["max_box_acc"]) == pytest.approx(75.0)  # 3 of 4 boxes right
    assert float(out["gt_known_loc_at_best"]) == pytest.approx(75.0)
    assert float(out["top1_loc_at_best"]) == pytest.approx(50.0)  # the 2nd is misclassified


def test_batch_hook_leaves_model_untouched():
    dm = make_data()
    torch.manual_seed(0)
    model = make_model(dm)
    batch = next(iter(dm.val_dataloader()))
    torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"]).backward()
    modes = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    callback = ValLocalization()
    trainer = type("T", (), {"sanity_checking": False})()
    with torch.inference_mode():
        logits, feats = model.net.forward_with_features(batch["image"])
        outputs = {"loss": torch.tensor(0.0), "logits": logits, "features": feats}
        callback.on_validation_batch_end(trainer, model, outputs, batch, 0)
    assert int(callback.metrics.box_v2.num_images) == len(batch["image"])
    assert {n: m.training for n, m in model.named_modules()} == modes
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n

"""ValLocalization: metrics logged each validation epoch, equal to an offline evaluation."""

import pytest
import torch
from cb_helpers import make_data, make_model, offline_metrics, read_events

from camlab.callbacks import ValLocalization

NAMES = (
    "val/max_box_acc_v2", "val/max_box_acc", "val/top1_loc", "val/gt_known_loc",
    "val/max_box_acc_threshold",
)  # fmt: skip


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
    expected = offline_metrics(root / "ckpt" / "last.ckpt")
    events = read_events(root / "tb" / "run")
    for name in NAMES:
        assert float(trainer.callback_metrics[name]) == pytest.approx(expected[name], abs=1e-4)
        assert events.Scalars(name)[-1].value == pytest.approx(expected[name], abs=1e-4)


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
    assert int(callback.box_acc_v2.num_images) == len(batch["image"])
    assert {n: m.training for n, m in model.named_modules()} == modes
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n

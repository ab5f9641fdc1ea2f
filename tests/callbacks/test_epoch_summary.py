"""EpochSummary: one line per epoch in the Python log, with the values TensorBoard got."""

import re
from types import SimpleNamespace

import pytest
from cb_helpers import read_events

from camlab.callbacks import EpochSummary

LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+) \(\d+ s\): (.*)$")


def parse(line: str) -> tuple[int, int, dict[str, float]]:
    match = LINE.match(line)
    assert match, line
    epoch, _, step, rest = match.groups()
    train, _, val = rest.partition(" | ")
    words = (train + " " + val).split()
    return (
        int(epoch),
        int(step),
        {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)},
    )


def test_one_line_per_epoch_with_the_logged_values(fitted):
    root, _, _ = fitted
    lines = (root / "train.log").read_text().splitlines()
    assert len(lines) == 2
    events = read_events(root / "tb" / "run")
    for epoch, line in enumerate(lines, start=1):
        number, step, values = parse(line)
        assert number == epoch
        # The step of this epoch's scalars in TensorBoard.
        assert step == events.Scalars("train/loss_epoch")[epoch - 1].step
        assert step == events.Scalars("val/acc")[epoch - 1].step
        expected = {
            "train/loss": "train/loss_epoch", "train/acc": "train/acc", "val/loss": "val/loss",
            "val/acc": "val/acc", "val/max_box_acc_v2": "val/max_box_acc_v2",
            "val/top1_loc_at_best_tau": "val/top1_loc_at_best_tau",
        }  # fmt: skip
        for name, tag in expected.items():
            logged = events.Scalars(tag)[epoch - 1].value
            assert values[name] == pytest.approx(logged, rel=1e-3, abs=1e-6), name
        assert not any(name.endswith(("_step", "_epoch")) for name in values)


def test_epochs_without_validation_leave_val_out():
    summary = EpochSummary()
    trainer = SimpleNamespace(current_epoch=1, max_epochs=3, global_step=8, sanity_checking=False)
    metrics = {"train/loss_step": 9.0, "train/loss_epoch": 1.25, "train/loss": 1.0,
               "train/acc": 50.0, "val/acc": 40.0, "lr-AdamW/head": 0.001}  # fmt: skip
    line = summary.line(trainer, metrics, 12.0)
    assert line == "epoch 2/3 step 7 (12 s): train/acc 50 train/loss 1.25"
    summary.on_validation_end(trainer, None)
    assert line + " | val/acc 40" == summary.line(trainer, metrics, 12.0)

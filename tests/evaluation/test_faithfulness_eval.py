"""evaluate.py metrics=[...,faithfulness]: the numbers of camlab.metrics on the split."""

from conftest import evaluate
from faith_helpers import FAITH, assert_same, direct

from camlab.data import ShapesDataModule
from camlab.evaluate import scorable_metrics


def test_faithfulness_numbers_are_the_metrics_on_the_scored_split(trained, tmp_path):
    ckpt = trained / "checkpoints" / "last.ckpt"
    out = evaluate(
        f"ckpt_path={ckpt}", "cam.methods=[cam]", "metrics=[boxes,faithfulness]",
        "calibrate_on=val", "num_workers=0", *FAITH, run_dir=tmp_path,
    )  # fmt: skip
    cam = out["methods"]["cam"]
    assert_same(cam, direct(ckpt, "test"))  # test's numbers, not the calibration split's
    assert "max_box_acc_v2" in cam and "calibrated_on_val" in cam  # box metrics still there
    assert 0 <= cam["average_drop"] <= 100 and 0 <= cam["pointing_game"] <= 100
    assert len(cam["road_morf_curve"]) == 2


def test_faithfulness_is_opt_in():
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    assert scorable_metrics(dm, "test", None) == {"boxes", "pxap"}
    assert scorable_metrics(dm, "test", ["faithfulness"]) == {"faithfulness"}

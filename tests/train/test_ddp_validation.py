"""Validation under 2-process CPU DDP scores every image once, with rank 0's network: the
metrics equal one process exactly, on a val split that does not divide by the world size and
with BatchNorm statistics left to drift apart on the two ranks during training."""

import json
import subprocess
import sys
import textwrap

import pytest
import pytorch_lightning as pl
import torch

from camlab.callbacks import ValLocalization
from camlab.classifier import GAPClassifier
from camlab.data.shapes import ShapesDataModule

VAL_SIZE = 25  # 13 + 12 images on the two ranks; a padded sampler would score 26

SCRIPT = """
import functools, json, sys
import pytorch_lightning as pl
import torch
from camlab.callbacks import LastEveryEpochCheckpoint, ValLocalization
from camlab.data.shapes import ShapesDataModule
from camlab.classifier import GAPClassifier

if __name__ == "__main__":
    torch.set_num_threads(1)
    root = {root!r}
    pl.seed_everything(0)
    dm = ShapesDataModule(image_size=48, train_size=32, val_size={val_size}, test_size=8,
                          batch_size=8, num_workers=0)
    model = GAPClassifier("resnet18", num_classes=dm.num_classes, in_channels=3,
                          optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
                          mean=dm.mean, std=dm.std, class_names=dm.class_names, image_size=48)
    trainer = pl.Trainer(
        accelerator="cpu", strategy="ddp", devices=2, max_epochs=2, logger=False,
        callbacks=[ValLocalization(), LastEveryEpochCheckpoint(dirpath=root, save_last=True,
                                                               monitor="val/acc", mode="max")],
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, dm)
    if trainer.is_global_zero:
        metrics = {{k: float(v) for k, v in trainer.callback_metrics.items()}}
        open(root + "/ddp.json", "w").write(json.dumps(metrics))
"""


def one_process_validation(checkpoint) -> dict[str, float]:
    dm = ShapesDataModule(image_size=48, train_size=32, val_size=VAL_SIZE, test_size=8,
                          batch_size=8, num_workers=0)  # fmt: skip
    model = GAPClassifier.load_from_checkpoint(checkpoint)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[ValLocalization()],
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    (metrics,) = trainer.validate(model, dm)
    return metrics


@pytest.mark.slow
def test_ddp_validation_equals_one_process(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(SCRIPT.format(root=str(tmp_path), val_size=VAL_SIZE)))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1
    single = one_process_validation(tmp_path / "last.ckpt")
    names = [n for n in single if n.startswith("val/")]
    assert {"val/acc", "val/loss", "val/max_box_acc_v2", "val/max_box_acc", "val/gt_known_loc",
            "val/top1_loc"} <= set(names)  # fmt: skip
    for name in names:
        if name == "val/loss":  # a float sum, added up in another order
            assert ddp[name] == pytest.approx(single[name], rel=1e-6), name
        else:
            assert ddp[name] == single[name], (name, ddp[name], single[name])

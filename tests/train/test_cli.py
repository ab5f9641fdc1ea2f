"""``python train.py`` end to end (as a user runs it, and its ``train()`` in this process) and
its early errors."""

import json

import pytest
import torch
from conftest import compose_train, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from camlab.classifier import GAPClassifier
from camlab.errors import CamlabError
from camlab.train import train


def test_fast_dev_run_as_typed(tmp_path):
    out = run_train("debug=fast_dev_run", "data.num_workers=0", run_dir=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / ".hydra" / "config.yaml").exists() and (tmp_path / "train.log").exists()


def test_fast_dev_run_on_shapes(tmp_path):
    train(compose_train(tmp_path, "debug=fast_dev_run", "data=shapes", fast=["data.num_workers=0"]))
    assert (tmp_path / "metrics.json").exists()


def test_full_mnist_from_local_copy_trains_checkpoints_and_logs(mnist_raw_dir, tmp_path):
    overrides = [
        "data=mnist", f"paths.data_dir={mnist_raw_dir}", "data.val_size=500",
        "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1",
        "~callbacks.rich_progress_bar",
    ]  # fmt: skip
    train(compose_train(tmp_path, *overrides))
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["epoch_000.ckpt", "last.ckpt"]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss_step", "val/acc", "val/loss", "test/acc"} <= set(acc.Tags()["scalars"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["optimized_metric"] == "val/acc" and 0 <= metrics["value"] <= 100  # percent
    # the checkpoint loads alone and reproduces the model's outputs
    model = GAPClassifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert model.hparams.num_classes == 10 and model.hparams.class_names[3] == "3"
    assert model(torch.zeros(2, 1, 56, 56)).shape == (2, 10)


def _assert_clean_error(out, *needles):
    assert out.returncode != 0
    err = out.stderr
    assert "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in err, err[-3000:]


def test_unknown_model_lists_choices(tmp_path):
    out = run_train("model=resnet19", run_dir=tmp_path)
    _assert_clean_error(out, "resnet19", "resnet18", "vgg16", "efficientnet_b0")


def test_unknown_data_lists_choices(tmp_path):
    # Hydra's composition error, which train.py prints as it is (see the model case above).
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as raised:
        compose_train(tmp_path, "data=cifar")
    for needle in ("cifar", "mnist_embedded", "shapes"):
        assert needle in str(raised.value)


def test_missing_mnist_is_a_clear_error(tmp_path):
    cfg = compose_train(tmp_path / "run", "data=mnist", f"paths.data_dir={tmp_path}",
                        "data.download=false")  # fmt: skip
    with pytest.raises(CamlabError, match="MNIST is not at .*data=mnist_embedded"):
        train(cfg)


def test_checkpoint_for_another_class_count(tmp_path):
    model = GAPClassifier("resnet18", num_classes=4, in_channels=3)
    ckpt = tmp_path / "shapes.ckpt"
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, ckpt)
    with pytest.raises(CamlabError, match="trained for 4 classes, but the data set has 10"):
        train(compose_train(tmp_path / "run", f"ckpt_path={ckpt}"))
    with pytest.raises(CamlabError, match="nope.ckpt does not exist"):
        train(compose_train(tmp_path / "run2", f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def test_the_entry_points_answer_before_importing_torch(tmp_path):
    """``--help``, ``--cfg job`` and a bad override need no torch or Lightning (6 s of imports on
    2 cores): Hydra composes in camlab.cli, the run imports camlab.train / camlab.evaluate."""
    import subprocess
    import sys

    heavy = "('torch', 'pytorch_lightning', 'torchvision', 'numba')"
    code = (
        "import sys; from camlab.cli import evaluate_main, train_main; "
        "sys.argv = ['train.py', '--cfg', 'job', 'model=resnet34']\n"
        "try:\n    train_main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {heavy} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert "backbone: resnet34" in out.stdout, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout

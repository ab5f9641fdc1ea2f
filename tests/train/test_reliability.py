"""Untrusted and malformed inputs: no code runs from a checkpoint, every bad input is one
paragraph with the fix and a non-zero exit, and ``last.ckpt`` always holds the latest epoch."""

import functools
import os

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, ROOT, Payload, compose_train, run_cam_image, run_train
from torch.utils.data import DataLoader, Dataset

from camlab.callbacks import LastEveryEpochCheckpoint
from camlab.checkpoint_io import read_checkpoint
from camlab.classifier import GAPClassifier
from camlab.data.shapes import ShapesDataModule
from camlab.errors import CamlabError, user_message
from camlab.models.backbones import check_input_size
from camlab.train import check_trainer_config, train


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "crafted.ckpt"
    model = GAPClassifier("squeezenet1_1", num_classes=10, in_channels=1)
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
         "extra": Payload(str(marker))},
        path,
    )  # fmt: skip
    assert not marker.exists()
    return path, marker


def _one_paragraph(out, *needles):
    assert out.returncode != 0, out.stdout[-2000:]
    err = out.stderr
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and len(err.split("Error: ")) == 2, err[-3000:]
    for needle in needles:
        assert needle in lines[0], err[-3000:]


def test_crafted_checkpoint_is_refused_by_every_entry_point(crafted, tmp_path, capsys):
    path, marker = crafted
    with pytest.raises(CamlabError, match="Refused to load .*would run code"):
        GAPClassifier.load_from_checkpoint(path)
    with pytest.raises(CamlabError, match="Refused to load"):
        read_checkpoint(str(path))

    # What train.py and evaluate.py run (their one-paragraph printing: the command-line tests).
    with pytest.raises(CamlabError, match="Refused to load .*weights_only=True"):
        train(compose_train(tmp_path / "train", f"ckpt_path={path}"))
    from hydra import compose, initialize_config_dir

    from camlab.evaluate import evaluate

    overrides = [f"ckpt_path={path}", "data=mnist_embedded", "data.num_workers=0",
                 f"paths.output_dir={tmp_path / 'eval'}"]  # fmt: skip
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("eval", overrides=overrides)
    with pytest.raises(CamlabError, match="Refused to load"):
        evaluate(cfg)

    assert run_cam_image(path, tmp_path) == 2
    assert "Refused to load" in capsys.readouterr().err
    assert not marker.exists(), "code from the checkpoint ran"


def _real_checkpoint(tmp_path) -> str:
    model = GAPClassifier("squeezenet1_1", num_classes=10, in_channels=1)
    path = tmp_path / "real.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("empty", r"is empty \(0 bytes\)"),
        ("truncated", "not a readable PyTorch checkpoint"),
        ("text", "not a readable PyTorch checkpoint"),
        ("list", "a list without state_dict, hyper_parameters"),
        ("state_dict_only", "a dict without hyper_parameters"),
    ],
)
def test_unreadable_or_foreign_checkpoints_name_the_problem(tmp_path, kind, words):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = open(_real_checkpoint(tmp_path), "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("epoch,loss\n0,1.2\n")
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    else:
        torch.save({"state_dict": {}}, path)
    with pytest.raises(CamlabError, match=words):
        read_checkpoint(str(path))
    with pytest.raises(CamlabError, match=words):
        GAPClassifier.load_from_checkpoint(path)


def test_truncated_checkpoint_to_resume(tmp_path):
    data = open(_real_checkpoint(tmp_path), "rb").read()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CamlabError, match="not a readable PyTorch checkpoint.*last.ckpt"):
        train(compose_train(tmp_path / "run", f"ckpt_path={path}"))


def test_a_bad_override_is_one_paragraph_on_the_command_line(tmp_path):
    # The command-line path once (stderr paragraph, train.log); the checks themselves in-process.
    words = "data.batch_size='abc' must be a whole number >= 1"
    out = run_train(*FAST, "data.batch_size=abc", run_dir=tmp_path)
    _one_paragraph(out, words)
    assert words in (tmp_path / "train.log").read_text()  # recorded with the run


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["data.batch_size=-4"], "data.batch_size=-4 must be a whole number >= 1"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not a whole number"),
        (["data.val_size=-5"], "data.val_size=-5 must be a whole number >= 1"),
        (["model=inception_v3", "data.canvas_size=40"], "needs at least 75 px"),
        (["model.optimizer.lr=fast"], r"Invalid model.optimizer / model.scheduler settings"),
    ],
)
def test_bad_overrides_fail_before_training(tmp_path, overrides, words):
    with pytest.raises(CamlabError, match=words):
        train(compose_train(tmp_path, *overrides))
    assert not (tmp_path / "checkpoints").exists()


def test_val_size_larger_than_mnist(mnist_raw_dir, tmp_path):
    cfg = compose_train(tmp_path, "data=mnist", f"paths.data_dir={mnist_raw_dir}",
                        "data.val_size=4000")  # fmt: skip
    with pytest.raises(CamlabError, match="data.val_size=4000 leaves no training digits.*4000 "):
        train(cfg)


class _Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        raise CamlabError("Image /data/x.jpg does not exist: fix data.data_root.")


def test_error_in_a_loader_worker_is_the_original_paragraph():
    with pytest.raises(CamlabError) as err:
        next(iter(DataLoader(_Broken(), num_workers=1)))
    assert "Original Traceback" in str(err.value)  # what torch re-raises
    assert user_message(err.value) == "Image /data/x.jpg does not exist: fix data.data_root."


def test_worker_error_is_the_original_paragraph(tmp_path, monkeypatch):
    # A CamlabError raised in a DataLoader worker process reaches train() wrapped by torch with
    # the worker's traceback; the paragraph train.py prints is the original message alone.
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "data"))
    from wsol_fake import make_box_dataset

    make_box_dataset(tmp_path)
    # Not item 0, which the main process reads before training (has_boxes), and no panel
    # (it loads its images in the main process): a DataLoader worker meets it.
    (image,) = (tmp_path / "dataset" / "CUB").glob("*/val_2.png")
    image.unlink()
    cfg = compose_train(
        tmp_path / "run", "data=cub", f"paths.data_dir={tmp_path}", "debug=fast_dev_run",
        "data.num_workers=1", "data.batch_size=3", "~callbacks.cam_panel",
        fast=["trainer.accelerator=cpu"],
    )  # fmt: skip
    with pytest.raises(Exception) as raised:
        train(cfg)
    assert "Original Traceback" in str(raised.value)  # it did come from the worker
    message = user_message(raised.value)
    assert message.startswith(f"Image {image} does not exist") and "data.data_root" in message
    assert "Original Traceback" not in message and "Traceback" not in message


def test_checks_in_process():
    check_trainer_config({"max_epochs": -1, "limit_val_batches": 0.5, "max_steps": 10})
    for key, value in [("max_epochs", 2.5), ("limit_train_batches", "x"), ("min_epochs", -2),
                       ("accumulate_grad_batches", True)]:  # fmt: skip
        with pytest.raises(CamlabError, match=f"trainer.{key}="):
            check_trainer_config({key: value})
    check_input_size("inception_v3", 75)
    with pytest.raises(CamlabError, match="'inception_v3', which needs at least 75 px.*resnet18"):
        check_input_size("inception_v3", 40)
    with pytest.raises(CamlabError, match="data.num_workers=-1"):
        ShapesDataModule(num_workers=-1)


def test_last_ckpt_is_the_latest_epoch_when_the_metric_does_not_improve(tmp_path):
    # monitor="epoch", mode="min": the first epoch stays the best, later ones never improve.
    pl.seed_everything(0)
    dm = ShapesDataModule(image_size=32, train_size=16, val_size=8, test_size=8, batch_size=8,
                          num_workers=0)  # fmt: skip
    model = GAPClassifier(
        "squeezenet1_1", num_classes=dm.num_classes, in_channels=3,
        optimizer=functools.partial(torch.optim.SGD, lr=0.01), image_size=32,
    )  # fmt: skip
    ckpt = LastEveryEpochCheckpoint(
        dirpath=tmp_path, filename="epoch_{epoch:03d}", monitor="epoch", mode="min",
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=3, callbacks=[ckpt], logger=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, dm)
    assert sorted(os.listdir(tmp_path)) == ["epoch_000.ckpt", "last.ckpt"]
    last = read_checkpoint(str(tmp_path / "last.ckpt"))
    assert last["epoch"] == 2 and last["global_step"] == 3 * 2
    assert read_checkpoint(str(tmp_path / "epoch_000.ckpt"))["epoch"] == 0

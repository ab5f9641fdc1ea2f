"""Files someone hands over (a checkpoint, a run folder) never delete, instantiate or mislead:
callback state cannot name paths outside the run, nothing read from a file chooses a callable,
evaluation takes the data from the checkpoint, and a finished run is never overwritten."""

import functools
import logging
import os

import pytest
import pytorch_lightning as pl
import torch
from conftest import FAST, ROOT, Payload, compose_train, run_cam_image, run_train
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

import camlab.evaluate
import camlab.train
from camlab.callbacks import LastEveryEpochCheckpoint
from camlab.checkpoint_io import read_checkpoint
from camlab.classifier import GAPClassifier
from camlab.data.registry import build_datamodule, describe
from camlab.data.shapes import ShapesDataModule
from camlab.errors import CamlabError
from camlab.rundir import KeepRunOutputs, overwrite_problem


def tiny_fit(ckpt_dir, callback_cls, max_epochs: int, ckpt_path=None) -> None:
    """A squeezenet on 16 shape images; the checkpoint monitors ``step`` (mode max), so every
    epoch is an improvement and Lightning replaces (deletes) the previous top-k file."""
    pl.seed_everything(0)
    dm = ShapesDataModule(image_size=32, train_size=16, val_size=8, test_size=8, batch_size=8,
                          num_workers=0)  # fmt: skip
    model = GAPClassifier(
        "squeezenet1_1", num_classes=4, in_channels=3, image_size=32,
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
    )  # fmt: skip
    ckpt = callback_cls(dirpath=ckpt_dir, filename="epoch_{epoch:03d}", monitor="step",
                        mode="max", save_top_k=1, save_last=True,
                        auto_insert_metric_name=False)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=max_epochs, callbacks=[ckpt], logger=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, dm, ckpt_path=ckpt_path)


def craft_resume(run, victim) -> str:
    """``last.ckpt`` of a real one-epoch run, its ModelCheckpoint state pointing at ``victim``:
    tensors and plain strings only (it loads with weights_only=True)."""
    ckpt_dir = run / "checkpoints"
    path = ckpt_dir / "last.ckpt"
    checkpoint = read_checkpoint(str(path))
    (key,) = [k for k in checkpoint["callbacks"] if "Checkpoint" in k]
    state = checkpoint["callbacks"][key]
    climb = f"{ckpt_dir}/../../../{victim.name}"
    state["last_model_path"] = f"{climb}/precious.txt"
    state["kth_best_model_path"] = f"{climb}/tree"
    state["best_model_path"] = f"{climb}/tree"
    state["best_k_models"] = {f"{climb}/tree": torch.tensor(-1.0)}
    state["kth_value"] = torch.tensor(-1.0)
    torch.save(checkpoint, path)
    return str(path)


def make_victim(root):
    victim = root / "victim"
    (victim / "tree" / "sub").mkdir(parents=True)
    (victim / "precious.txt").write_text("keep")
    (victim / "tree" / "sub" / "file.txt").write_text("keep")
    return victim


@pytest.mark.parametrize("guarded", [True, False])
def test_checkpoint_state_cannot_delete_outside_the_run(tmp_path, caplog, guarded):
    # Unguarded (Lightning's ModelCheckpoint) shows the crafted file is a real attack: the
    # same resume deletes the file and the whole folder it names.
    callback = LastEveryEpochCheckpoint if guarded else ModelCheckpoint
    victim = make_victim(tmp_path)
    run = tmp_path / "runs" / "D"
    tiny_fit(run / "checkpoints", callback, max_epochs=1)
    crafted = craft_resume(run, victim)
    with caplog.at_level(logging.WARNING, logger="camlab.callbacks.checkpoint"):
        tiny_fit(run / "checkpoints", callback, max_epochs=2, ckpt_path=crafted)
    if not guarded:
        assert not (victim / "precious.txt").exists() and not (victim / "tree").exists()
        return
    assert (victim / "precious.txt").read_text() == "keep"
    assert (victim / "tree" / "sub" / "file.txt").read_text() == "keep"
    assert "outside this run's checkpoint folder" in caplog.text
    assert "last_model_path=" in caplog.text and "best_k_models[" in caplog.text
    # The run goes on: last.ckpt rewritten with epoch 2, and the new top-1 checkpoint (the first
    # epoch's stays: the dropped state no longer says it is the run's own to replace).
    files = ["epoch_000.ckpt", "epoch_001.ckpt", "last.ckpt"]
    assert sorted(os.listdir(run / "checkpoints")) == files
    assert read_checkpoint(str(run / "checkpoints" / "last.ckpt"))["epoch"] == 1


def test_only_files_directly_in_the_checkpoint_folder_are_owned(tmp_path):
    ckpt = LastEveryEpochCheckpoint(dirpath=tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "sub").mkdir(parents=True)
    (tmp_path / "checkpoints" / "out.ckpt").symlink_to(tmp_path / "elsewhere.ckpt")
    inside = str(tmp_path / "checkpoints" / "epoch_000.ckpt")
    assert ckpt.owns(inside)
    assert ckpt.owns(str(tmp_path / "checkpoints" / "x" / ".." / "last.ckpt"))
    for path in [str(tmp_path / "checkpoints" / ".." / "last.ckpt"), "s3://bucket/last.ckpt",
                 str(tmp_path / "checkpoints" / "sub"), str(tmp_path / "checkpoints" / "out.ckpt"),
                 "", None, 5, str(tmp_path / "checkpoints" / "sub" / "a.ckpt")]:  # fmt: skip
        assert not ckpt.owns(path), path


# -- evaluation: nothing instantiated from a run folder, the data from the checkpoint ---------


def eval_cfg(**extra):
    return OmegaConf.create({"data": None, "batch_size": None, "num_workers": 0, **extra})


def evaluation_data(cfg, ckpt):
    """``evaluate.py``'s data module for the checkpoint ``ckpt``, as ``evaluate()`` builds it."""
    return camlab.evaluate.evaluation_data(cfg, ckpt, read_checkpoint(ckpt)["hyper_parameters"])


def run_folder(tmp_path, data: dict, data_config=None):
    """``<tmp>/run/checkpoints/last.ckpt`` (squeezenet, 10 classes) and ``.hydra/config.yaml``."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    names = [str(d) for d in range(10)]
    model = GAPClassifier("squeezenet1_1", num_classes=10, in_channels=1, class_names=names,
                          data_config=data_config)  # fmt: skip
    path = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    config = {"paths": {"data_dir": str(tmp_path)}, "data": data}
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    return str(path)


def test_run_folder_config_never_chooses_a_callable(tmp_path):
    # A checkpoint that does not record its data (as before this check existed): the run
    # folder's config is the fallback, and its `_target_` must be one of camlab's data modules.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"x": 1}, evil)
    attacks = [
        {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
        {"_target_": "torch.load", "f": str(evil), "weights_only": False},
        {"_target_": "os.system", "command": f"touch {marker}"},
        {"_target_": "camlab.data.mnist.MNISTLocDataModule", "_args_": [], "source": "embedded",
         "canvas_size": {"_target_": "os.system", "command": f"touch {marker}"}},
    ]  # fmt: skip
    for k, data in enumerate(attacks):
        ckpt = run_folder(tmp_path / str(k), data)
        with pytest.raises(CamlabError, match="not one of camlab's|not plain"):
            evaluation_data(eval_cfg(), ckpt)
    assert victim.read_text() == "keep" and not marker.exists()


def test_evaluation_takes_the_data_from_the_checkpoint(tmp_path, caplog):
    # Run A trained on 56 px canvases; a later failed run rewrote the folder's config to 112 px.
    trained = describe(ShapesDataModule(image_size=48, val_size=8, test_size=8))
    rewritten = {"_target_": "camlab.data.shapes.ShapesDataModule", "image_size": 112}
    ckpt = run_folder(tmp_path, rewritten, data_config=trained)
    with caplog.at_level(logging.WARNING, logger="camlab.evaluate"):
        dm = evaluation_data(eval_cfg(), ckpt)
    assert isinstance(dm, ShapesDataModule) and dm.image_size == 48 and dm.num_workers == 0
    assert "image_size=112 (trained with 48)" in caplog.text
    assert "evaluating on the data settings recorded in the checkpoint" in caplog.text
    # A run-folder _target_ that is not camlab's is not even looked at when the checkpoint
    # records its data.
    bad = run_folder(tmp_path / "b", {"_target_": "builtins.exec", "source": "1/0"}, trained)
    assert evaluation_data(eval_cfg(), bad).image_size == 48


def test_data_settings_rebuild_through_the_registry_only():
    dm = ShapesDataModule(image_size=40, train_size=4, val_size=4, test_size=4, seed=3)
    settings = describe(dm)
    assert settings["module"] == "shapes" and settings["image_size"] == 40
    rebuilt = build_datamodule(settings, "here")
    assert describe(rebuilt) == settings
    for bad, words in [
        ({**settings, "module": "builtins.open"}, "not one of camlab's"),
        ({**settings, "_target_": "os.system"}, r"unknown settings \['_target_'\]"),
        ({**settings, "image_size": {"_target_": "os.system"}}, "not plain"),
        ({**settings, "image_size": "big"}, "data.image_size='big'"),
        ("shapes", "not a mapping"),
    ]:  # fmt: skip
        with pytest.raises(CamlabError, match=words):
            build_datamodule(bad, "The checkpoint x.ckpt")


# -- a finished run is never overwritten ---------------------------------------------------------


def test_a_second_run_into_a_finished_run_folder_is_refused(tmp_path):
    run = tmp_path / "D"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    saved = {"metrics.json": '{"value": 27.08}', ".hydra/config.yaml": "data:\n  canvas_size: 84\n",
             "checkpoints/last.ckpt": "weights"}  # fmt: skip
    for name, text in saved.items():
        (run / name).write_text(text)
    out = run_train(*FAST, "data.canvas_size=112", run_dir=run)
    assert out.returncode == 1
    assert f"{run} already holds a run (metrics.json, checkpoints/last.ckpt)" in out.stderr
    assert "Traceback" not in out.stderr
    for name, text in saved.items():
        assert (run / name).read_text() == text, name
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "metrics.json"]


def test_which_folders_a_run_may_start_in(tmp_path, monkeypatch, capsys):
    run = tmp_path / "D"
    assert overwrite_problem(str(run), "train", None) is None  # new
    (run / "checkpoints").mkdir(parents=True)
    (run / "train.log").write_text("")
    assert overwrite_problem(str(run), "train", None) is None  # a run that failed at start
    (run / "checkpoints" / "last.ckpt").write_text("")
    last = str(run / "checkpoints" / "last.ckpt")
    assert overwrite_problem(str(run), "train", last) is None  # resuming in place
    assert "to continue that training run" in overwrite_problem(str(run), "train", None)
    assert overwrite_problem(str(run), "train", str(tmp_path / "other.ckpt"))
    # An evaluation never writes into a training run, even the checkpoint's own.
    assert overwrite_problem(str(run), "eval", last)
    (tmp_path / "E").mkdir()
    (tmp_path / "E" / "metrics.json").write_text("{}")
    assert "already holds a run (metrics.json)" in overwrite_problem(
        str(tmp_path / "E"), "eval", None
    )

    cfg = OmegaConf.create({"task_name": "eval", "ckpt_path": last,
                            "hydra": {"run": {"dir": str(tmp_path / "E")},
                                      "sweep": {"dir": str(tmp_path / "S")}}})  # fmt: skip
    with pytest.raises(SystemExit):
        KeepRunOutputs().on_run_start(cfg)
    assert "Error: " in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child joins rank 0's run
    KeepRunOutputs().on_run_start(cfg)
    KeepRunOutputs().on_multirun_start(cfg)  # a new sweep folder
    (tmp_path / "S" / "0_seed=1").mkdir(parents=True)
    (tmp_path / "S" / "0_seed=1" / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):
        KeepRunOutputs().on_multirun_start(cfg)
    assert "already holds a multirun (0_seed=1/metrics.json)" in capsys.readouterr().err


# -- early, one-paragraph errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.label_smoothing=5"], "model.label_smoothing=5 must be a number from 0.0 to 1.0"),
        (["model.backbone_lr_mult=-1"], "model.backbone_lr_mult=-1 must be a number"),
        (["seed=abc"], "seed='abc' must be a whole number"),
        (["data.scale_range=[3,1]"], r"data.scale_range=\[3, 1\] must be two numbers"),
        (["data.scale_range=[1]"], r"data.scale_range=\[1\] must be two numbers"),
        (["callbacks.model_checkpoint.monitor=val/bogus"],
         "callbacks.model_checkpoint.monitor=val/bogus is never logged in this run. Logged "
         "metrics: epoch, step, test/acc"),
        (["optimized_metric=val/pxap"], "optimized_metric=val/pxap is never logged"),
    ],
)  # fmt: skip
def test_bad_settings_fail_before_training(tmp_path, overrides, words):
    cfg = compose_train(tmp_path, *overrides)
    with pytest.raises(CamlabError, match=words):
        camlab.train.train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_monitored_names_follow_the_data(tmp_path):
    # Shapes have masks: val/pxap is logged there, so a checkpoint may monitor it.
    cfg = compose_train(tmp_path, "data=shapes", "callbacks.model_checkpoint.monitor=val/pxap",
                        "data.image_size=32", "model=squeezenet1_1", fast=[])  # fmt: skip
    model = GAPClassifier("squeezenet1_1", num_classes=4, image_size=32)
    dm = ShapesDataModule(image_size=32, val_size=4)
    callbacks = camlab.train.build_all(cfg.callbacks, "callbacks")
    camlab.train.check_monitored(cfg, model, dm, callbacks)
    names = next(cb for cb in callbacks if hasattr(cb, "logged_names")).logged_names(dm)
    assert "val/pxap" in names and "val/max_box_acc_v2" in names


def resumable(tmp_path, backbone="squeezenet1_1", epochs=2, **hparams):
    """A checkpoint of ``backbone`` on the embedded digits (56 px), ``epochs`` epochs done."""
    model = GAPClassifier(backbone, num_classes=10, in_channels=1, image_size=56, **hparams)
    path = tmp_path / f"{backbone}.ckpt"
    done = {"current": {"ready": epochs, "completed": epochs - 1, "started": epochs,
                        "processed": epochs}}  # fmt: skip
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "epoch": epochs - 1, "global_step": 10 * epochs,
                "loops": {"fit_loop": {"epoch_progress": done}}}, path)  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("ckpt", "overrides", "words"),
    [
        ("squeezenet1_1", ["model=resnet18"],
         "was trained with backbone 'squeezenet1_1', but this run builds 'resnet18'. Resume with "
         "model=squeezenet1_1"),
        ("squeezenet1_1", ["model=squeezenet1_1", "method=has"],
         "trained with method 'cam', but this run builds 'has'"),
        ("squeezenet1_1", ["model=squeezenet1_1", "trainer.max_epochs=2"],
         r"is already complete: it trained 2 epochs \(20 steps\) and this run stops at "
         "trainer.max_epochs=2. To train longer, raise it"),
        ("resnet18", ["model=resnet18", "model.hires_cam=false"],
         r"do not fit a resnet18 for 10 classes \(.*of another shape|do not fit"),
        ("folder", ["model=squeezenet1_1"], "is a folder, not a checkpoint file"),
    ],
)  # fmt: skip
def test_resume_errors_are_one_paragraph(tmp_path, ckpt, overrides, words):
    if ckpt == "folder":
        path = tmp_path
    elif ckpt == "resnet18":  # same backbone name, other weights: a 1x1 head of other shape
        path = resumable(tmp_path, "resnet18", hires_cam=True)
        state = torch.load(path, weights_only=True)
        state["state_dict"]["net.classifier.weight"] = torch.zeros(10, 7)
        torch.save(state, path)
    else:
        path = resumable(tmp_path, ckpt)
    cfg = compose_train(tmp_path / "run", f"ckpt_path={path}", *overrides)
    with pytest.raises(CamlabError, match=words) as err:
        camlab.train.train(cfg)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert len(str(err.value)) < 600  # a paragraph, not the state dict's key lists


def test_a_resumed_run_with_epochs_left_is_accepted(tmp_path):
    path = resumable(tmp_path, epochs=1)
    cfg = compose_train(tmp_path, f"ckpt_path={path}", "model=squeezenet1_1")
    model = GAPClassifier("squeezenet1_1", num_classes=10, in_channels=1, image_size=56)
    camlab.train.check_checkpoint(str(path), model, cfg.trainer)  # max_epochs 3 > 1 done


def test_instantiator_in_a_checkpoint_is_refused_everywhere(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    model = GAPClassifier("squeezenet1_1", num_classes=10, in_channels=1)
    path = tmp_path / "inst.ckpt"
    # Lightning's loader imports and calls hparams["_instantiator"](cls, hparams).
    hparams = {**model.hparams, "_instantiator": "os.system"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    with pytest.raises(CamlabError, match="_instantiator.*camlab rebuilds models from its own"):
        GAPClassifier.load_from_checkpoint(path)

    assert run_cam_image(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert "Refused to load" in err and "_instantiator" in err and "Traceback" not in err
    assert not marker.exists()


def test_refused_pickle_gives_no_advice_to_allow_it(tmp_path):
    path = tmp_path / "p.ckpt"
    payload = Payload(str(tmp_path / "pwned.txt"))
    torch.save({"state_dict": {}, "hyper_parameters": {}, "x": payload}, path)
    with pytest.raises(CamlabError) as err:
        read_checkpoint(str(path))
    assert "it names exec" in str(err.value) or "it names builtins.exec" in str(err.value)
    assert "add_safe_globals" not in str(err.value) and "safe_globals" not in str(err.value)


def test_numba_cache_goes_to_the_user_cache_folder(tmp_path, monkeypatch):
    import subprocess
    import sys

    from camlab.metrics.jit import cache_dir

    code = ("from camlab.metrics.pxap import PxAP; import torch; m = PxAP(0.1); "
            "m.update(torch.rand(1, 8, 8), torch.rand(1, 8, 8) > 0.5); m.compute()")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    package = ROOT / "src" / "camlab" / "metrics" / "__pycache__"
    before = sorted(package.glob("*.nb*")) if package.exists() else []
    # A fresh interpreter compiles and caches: the files land in the user's cache folder.
    out = subprocess.run([sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((tmp_path / "camlab" / "numba").rglob("*.nbi")), "no numba cache index"
    after = sorted(package.glob("*.nb*")) if package.exists() else []
    assert after == before  # nothing new in the package's source folder
    # The same choice, in order: NUMBA_CACHE_DIR, XDG_CACHE_HOME, ~/.cache.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "own"))
    assert cache_dir() == str(tmp_path / "own")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "camlab" / "numba")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "camlab" / "numba")

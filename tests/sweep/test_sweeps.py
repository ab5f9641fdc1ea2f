"""Multiruns as a user runs them: an Optuna search (sqlite, resumed), the SLURM launcher config,
and the error when the sweep extra is missing (a grid: tests/sweep/test_sweep_ddp.py)."""

import csv
import os
import shutil
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sweep_helpers import ROOT, job_dirs, metrics, run_summarize, run_train

import camlab.cli
import camlab.launch


def optuna_trials(storage: str, name: str) -> list:
    import optuna  # 2.5 s to import: only in the test that reads a study

    return optuna.load_study(study_name=name, storage=storage).trials


def test_optuna_search_returns_metric_resumes_and_summarizes(tmp_path):
    # model and batch size fixed on the command line: Optuna searches lr, wd, label smoothing.
    common = [
        "-m", "hparams_search=optuna", "experiment=sweep_tiny", f"paths.log_dir={tmp_path}",
        "hydra.sweeper.study_name=tiny", "model=squeezenet1_1", "data.batch_size=8",
    ]  # fmt: skip
    out = run_train(*common, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 's1'}")
    assert out.returncode == 0, out.stderr[-3000:]
    storage = f"sqlite:///{tmp_path}/optuna/tiny.db"
    trials = optuna_trials(storage, "tiny")
    jobs = job_dirs(tmp_path / "s1")
    assert len(trials) == len(jobs) == 2
    for trial, job in zip(trials, jobs, strict=True):
        assert trial.state.name == "COMPLETE"
        # What train() returned is what Optuna recorded: the best epoch's val MaxBoxAccV2.
        assert metrics(job)["optimized_metric"] == "val/max_box_acc_v2"
        assert trial.value == pytest.approx(metrics(job)["value"])
        assert set(trial.params) == {
            "model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing",
        }  # fmt: skip

    out = run_summarize(tmp_path / "s1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Optuna best:" in out.stdout
    with open(tmp_path / "s1" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "model.optimizer.lr" in rows[0]
    assert float(rows[0]["val/max_box_acc_v2"]) == pytest.approx(max(t.value for t in trials))

    # The same command again continues the study (load_if_exists). This session's trial
    # optimizes a metric that is never logged: a clear error before it trains, and the trial is
    # recorded as failed, not left RUNNING in the study.
    out = run_train(
        *common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 's2'}",
        "optimized_metric=val/nope", "callbacks.model_checkpoint.monitor=val/acc",
    )  # fmt: skip
    assert out.returncode != 0
    error = "Error: optimized_metric=val/nope is never logged in this run"
    assert error in out.stderr, out.stderr[-3000:]
    assert "val/max_box_acc_v2" in out.stderr  # the logged names, to pick from
    states = [(t.number, t.state.name) for t in optuna_trials(storage, "tiny")]
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL")]
    (job,) = job_dirs(tmp_path / "s2")  # "val/nope" nests the job directory: still found
    assert not (job / "checkpoints").exists()  # refused before training
    assert error in (job / "train.log").read_text()
    assert "| failed |" in run_summarize(tmp_path / "s2").stdout


def test_slurm_launcher_composes_for_ddp(tmp_path, monkeypatch):
    overrides = [
        "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}", "hydra.job.name=train",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.timeout_min > 0
    assert cfg.trainer.strategy == "ddp"

    # The sbatch script submitit would submit (no cluster here: pretend srun exists).
    import submitit

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    params = instantiate(launcher).params
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"))
    params.pop("max_num_timeout")
    base = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes",
            "name", "stderr_to_stdout"}  # fmt: skip
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -m job", "0")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu"):
        assert f"#SBATCH {line}" in sbatch
    assert "\nsrun " in sbatch  # one task per GPU, started by srun, as Lightning expects


@pytest.mark.parametrize(
    "override, plugin",
    [("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper._impl"),
     ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher")],
)  # fmt: skip
def test_missing_sweep_extra_names_the_install(override, plugin, monkeypatch, capsys):
    real_import = camlab.launch.importlib.import_module

    def import_module(name, *args):
        if name == plugin:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args)

    monkeypatch.setattr(camlab.launch.importlib, "import_module", import_module)
    monkeypatch.setattr(camlab.cli, "train_task", lambda: pytest.fail("Hydra must not run"))
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", override, "model.optimizer.lr=1e-3,1e-4"])
    with pytest.raises(SystemExit) as exit_info:
        camlab.cli.train_main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert 'pip install -e ".[sweep]"' in err and override in err and plugin in err


def test_sqlalchemy_2_is_refused_for_optuna(monkeypatch):
    import sqlalchemy

    monkeypatch.setattr(sqlalchemy, "__version__", "2.0.30")
    with pytest.raises(camlab.errors.CamlabError, match=r"sqlalchemy<2"):
        camlab.launch.check_sweep_extra(["hparams_search=optuna"])
    camlab.launch.check_sweep_extra(["model=resnet34", "hparams_search=null"])  # nothing to check


def test_child_argv_is_the_jobs_single_run():
    argv = ["train.py", "--config-dir", "/c", "-m", "-cn=train", "model.optimizer.lr=1e-3,1e-2"]
    child = camlab.launch.child_argv(argv, ["model.optimizer.lr=0.01", "trainer=ddp"])
    assert child == ["train.py", "--config-dir", "/c", "-cn=train", "model.optimizer.lr=0.01",
                     "trainer=ddp", "hydra.mode=RUN"]  # fmt: skip


def test_optuna_config_defaults():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert cfg.optimized_metric == "val/max_box_acc_v2"
    assert cfg.callbacks.val_localization._target_.endswith("ValLocalization")  # logs it
    assert sweeper.direction == "maximize" and sweeper.sampler.seed is not None
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert OmegaConf.select(cfg, "hydra.sweeper.storage").startswith("sqlite:///")
    assert {"model.optimizer.lr", "model.optimizer.weight_decay", "model"} <= set(sweeper.params)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert os.path.basename(str(sweeper.storage)) == "train_mnist_embedded.db"

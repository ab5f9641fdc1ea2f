"""``train()``: what ``python train.py [overrides]`` runs (see configs/train.yaml)."""

import json
import logging
import os
import sys

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from camlab.checkpoint_io import AtomicCheckpointIO, read_checkpoint
from camlab.classifier import GAPClassifier, check_state_dict
from camlab.data.registry import describe
from camlab.errors import CamlabError, report_error
from camlab.instantiate import build, build_all
from camlab.launch import in_multirun, multirun_job

log = logging.getLogger(__name__)
# Shipped inside the package, so an installed wheel runs from any directory.


# Trainer settings that must be whole numbers (None allowed), and the limit_* ones that may also
# be fractions: Lightning checks some with a bare assert, others only mid-fit.
TRAINER_INTS = ("max_epochs", "min_epochs", "max_steps", "min_steps", "num_nodes",
                "check_val_every_n_epoch", "log_every_n_steps", "accumulate_grad_batches",
                "num_sanity_val_steps")  # fmt: skip
TRAINER_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                  "val_check_interval")  # fmt: skip


def check_trainer_config(trainer_cfg: DictConfig) -> None:
    """Fails, naming the override, on trainer settings of the wrong type or sign."""
    for key in (*TRAINER_INTS, *TRAINER_LIMITS):
        value = trainer_cfg.get(key)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        whole = isinstance(value, int) and not isinstance(value, bool)
        ok = whole if key in TRAINER_INTS else number
        # -1 means "no limit" for max_epochs / max_steps and "all" for num_sanity_val_steps.
        if ok and value < 0 and not (value == -1 and key in ("max_epochs", "max_steps",
                                                              "num_sanity_val_steps")):  # fmt: skip
            ok = False
        if not ok:
            kind = "a whole number >= 0" if key in TRAINER_INTS else "a number >= 0"
            raise CamlabError(
                f"trainer.{key}={value!r} is not {kind}. Fix the override, e.g. "
                f"trainer.{key}={'2' if key in TRAINER_INTS else '1.0'}."
            )


def epochs_done(checkpoint: dict) -> int | None:
    """Training epochs a Lightning checkpoint has finished (its fit loop's processed epochs)."""
    try:
        done = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
    except (KeyError, TypeError):
        return None
    return done if isinstance(done, int) and not isinstance(done, bool) else None


def check_checkpoint(ckpt_path: str, model: GAPClassifier, trainer_cfg: DictConfig) -> None:
    """Fails early, with the fix, on a checkpoint to resume that is missing, unreadable, unsafe,
    of another network or class count, or whose run is already complete (read with
    ``weights_only=True``: no code from the file runs)."""
    checkpoint = read_checkpoint(ckpt_path)
    saved = checkpoint["hyper_parameters"]
    saved = saved if isinstance(saved, dict) else {}
    for key, group in (("backbone", "model"), ("method", "method")):
        if key in saved and saved[key] != model.hparams[key]:
            raise CamlabError(
                f"The checkpoint {ckpt_path} was trained with {key} {saved[key]!r}, but this run "
                f"builds {model.hparams[key]!r}. Resume with {group}={saved[key]} (and its other "
                "settings), or start a new run without ckpt_path."
            )
    if saved.get("num_classes", model.hparams.num_classes) != model.hparams.num_classes:
        raise CamlabError(
            f"The checkpoint {ckpt_path} was trained for {saved['num_classes']} classes, but the "
            f"data set has {model.hparams.num_classes}. Resume with the data it was trained on "
            "or start a new run without ckpt_path."
        )
    check_state_dict(model, checkpoint["state_dict"], ckpt_path)
    done, max_epochs = epochs_done(checkpoint), trainer_cfg.get("max_epochs")
    max_steps, step = trainer_cfg.get("max_steps"), checkpoint.get("global_step")
    epochs_over = done is not None and max_epochs not in (None, -1) and done >= max_epochs
    steps_over = isinstance(step, int) and max_steps not in (None, -1) and step >= max_steps
    if epochs_over or steps_over:
        limit = f"max_epochs={max_epochs}" if epochs_over else f"max_steps={max_steps}"
        raise CamlabError(
            f"The run of {ckpt_path} is already complete: it trained {done} epochs "
            f"({step} steps) and this run stops at trainer.{limit}. To train longer, raise it "
            f"(e.g. trainer.max_epochs={(done or 0) + 10}); to score the model, run evaluate.py "
            f"ckpt_path={ckpt_path}."
        )


def check_monitored(cfg: DictConfig, model: GAPClassifier, datamodule, callbacks: list) -> None:
    """Fails before training on a monitored or optimized metric name that nothing logs (Lightning
    would only notice after the first epoch)."""
    known = {"epoch", "step", *model.logged_names()}
    for callback in callbacks:
        if hasattr(callback, "logged_names"):
            known.update(callback.logged_names(datamodule))
    wanted = {"optimized_metric": cfg.optimized_metric}
    for key, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and node.get("monitor"):
            wanted[f"callbacks.{key}.monitor"] = node.monitor
    for where, name in wanted.items():
        # LearningRateMonitor's names (lr-<optimizer>...) depend on the optimizer's groups.
        if name is not None and not str(name).startswith("lr-") and name not in known:
            raise CamlabError(
                f"{where}={name} is never logged in this run. Logged metrics: "
                f"{', '.join(sorted(known))} (and lr-* from lr_monitor)."
            )


def train(cfg: DictConfig) -> float | None:
    """Fits (and tests) a GAP classifier as configured; returns ``cfg.optimized_metric``."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise CamlabError(f"seed={cfg.seed!r} must be a whole number. Fix the override (seed=42).")
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = cfg.paths.output_dir
    check_trainer_config(cfg.trainer)

    datamodule = build(cfg.data, "data")
    # The `method` group (configs/method/): its name and plain-valued hyper-parameters.
    method = OmegaConf.to_container(cfg.method, resolve=True) if cfg.get("method") else {}
    model = build(
        cfg.model,
        "model",
        method=method.pop("name", "cam"),
        method_params=method,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        mean=list(datamodule.mean),
        std=list(datamodule.std),
        class_names=list(datamodule.class_names),
        image_size=datamodule.image_size,
        data_config=describe(datamodule),  # evaluation rebuilds the data from the checkpoint
        # Resuming: the checkpoint holds the weights, so pretrained ones are not fetched again.
        init_from_checkpoint=bool(cfg.ckpt_path),
    )
    try:  # a wrong optimizer or scheduler setting fails here, not after the first epoch
        model.configure_optimizers()
    except (TypeError, ValueError, KeyError) as err:
        settings = {k: cfg.model.get(k) for k in ("optimizer", "scheduler")}
        raise CamlabError(
            f"Invalid model.optimizer / model.scheduler settings {settings}: {err}. Fix the "
            "override (e.g. model.optimizer.lr=3e-4)."
        ) from err
    if cfg.ckpt_path:
        check_checkpoint(cfg.ckpt_path, model, cfg.trainer)

    trainer_cfg = cfg.trainer
    if trainer_cfg.get("sync_batchnorm") and (
        trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    ):
        # SyncBatchNorm exists for GPUs only; CPU (gloo) DDP keeps per-process BatchNorm.
        log.warning("trainer.sync_batchnorm=true needs GPUs; running without it on the CPU.")
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"sync_batchnorm": False})

    callbacks = build_all(cfg.get("callbacks"), "callbacks")
    check_monitored(cfg, model, datamodule, callbacks)
    loggers = build_all(cfg.get("logger"), "logger")
    trainer = build(
        trainer_cfg, "trainer", callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()]
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    log.info("Training %s on %s; outputs in %s", cfg.model.backbone, cfg.data._target_, output_dir)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if cfg.get("test") and not trainer.fast_dev_run:
        trainer.test(model, datamodule=datamodule, ckpt_path=best)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    value = metrics.get(cfg.optimized_metric)
    if (
        ckpt is not None
        and ckpt.monitor == cfg.optimized_metric
        and ckpt.best_model_score is not None
    ):
        value = float(ckpt.best_model_score)  # the best epoch's value, not the last one's
    if trainer.is_global_zero:
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            summary = {"optimized_metric": cfg.optimized_metric, "value": value}
            json.dump({**summary, "best_checkpoint": best, "metrics": metrics}, f, indent=2)
    if not trainer.fast_dev_run and value is None:
        raise CamlabError(
            f"optimized_metric={cfg.optimized_metric} was never logged. Logged metrics: "
            f"{', '.join(sorted(metrics))}."
        )
    return value


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job (``camlab.cli.train_task``): ``train`` inside ``multirun_job``; a
    CamlabError is reported in one paragraph and exits 1 (in a multirun it is raised, so Hydra
    records the job as failed)."""
    multirun = in_multirun()
    try:
        with multirun_job():
            return train(cfg)
    except CamlabError as err:
        report_error(err, log)
        if multirun:
            # Hydra records the job as failed (Optuna: a FAIL trial, not one left RUNNING in
            # the study), runs the others and then exits non-zero with this error.
            raise
        sys.exit(1)

"""``evaluate()``: what ``python evaluate.py ckpt_path=<ckpt>`` runs (configs/eval.yaml)."""

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torchvision.io import write_png

from camlab.checkpoint_io import read_checkpoint
from camlab.classifier import GAPClassifier
from camlab.data.base import LocalizationDataModule
from camlab.data.registry import build_datamodule, describe, differences, from_target
from camlab.errors import CamlabError, report_error
from camlab.evaluation import report
from camlab.evaluation.baselines import build_baselines, check_method
from camlab.evaluation.examples import example_grid, pick_examples
from camlab.evaluation.fullsup import fullsup_trainer_settings
from camlab.evaluation.module import CamEvaluation
from camlab.evaluation.tensorboard import log_evaluation
from camlab.instantiate import build
from camlab.protocol import CAM_CURVE_INTERVAL

log = logging.getLogger(__name__)
TABLE = ["max_box_acc_v2", "max_box_acc", "pxap", "top1_loc", "top5_loc", "gt_known_loc"]
TABLE += ["average_drop", "deletion_auc", "insertion_auc", "road", "pointing_game"]


def run_config_path(ckpt_path: str) -> Path:
    """``<run>/.hydra/config.yaml`` of a checkpoint in ``<run>/checkpoints/``."""
    return Path(ckpt_path).resolve().parent.parent / ".hydra" / "config.yaml"


def run_folder_data(ckpt_path: str) -> tuple[dict | None, Path]:
    """The data settings in the config of the checkpoint's run folder (``<run>/.hydra``), read as
    plain values and never instantiated, or None when there is no such file."""
    run_config = run_config_path(ckpt_path)
    if not run_config.is_file():
        return None, run_config
    try:
        run = OmegaConf.load(run_config)
        node = OmegaConf.create({"paths": {"data_dir": run.paths.data_dir}, "data": run.data})
        data = OmegaConf.to_container(node, resolve=True)["data"]
    except Exception as err:  # noqa: BLE001 - YAML, interpolation and key errors alike
        raise CamlabError(
            f"{run_config} (the training run's config) cannot be read ({err}). Name the data set "
            "on the command line, e.g. data=mnist_embedded."
        ) from None
    if not isinstance(data, dict):
        raise CamlabError(f"{run_config}: `data` is not a mapping. Name the data set (data=...).")
    return from_target(data, str(run_config)), run_config


def curve_interval(requested: float | None, ckpt_path: str) -> float:
    """The threshold grid step: ``cam.cam_curve_interval`` when given, else the training run's
    (``cam_curve_interval`` in ``<run>/.hydra/config.yaml``: the WSOL recipes' 0.001, the
    reference's final test), else the reference evaluator's 0.01. The run's file is read as a
    plain value and must be a number in (0, 1)."""
    if requested is not None:
        return float(requested)
    run_config = run_config_path(ckpt_path)
    if not run_config.is_file():
        log.info("cam_curve_interval: %s (no %s)", CAM_CURVE_INTERVAL, run_config)
        return CAM_CURVE_INTERVAL
    try:
        value = OmegaConf.to_container(OmegaConf.load(run_config)).get("cam_curve_interval")
    except Exception:  # noqa: BLE001 - any unreadable file: the same message
        value = "unreadable"
    if value is None:  # a run from before the setting existed
        return CAM_CURVE_INTERVAL
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise CamlabError(
            f"{run_config} (the training run's config) gives cam_curve_interval={value!r}, not "
            "a number between 0 and 1. Pass the grid step, e.g. cam.cam_curve_interval=0.001."
        )
    log.info("cam_curve_interval: %s, the training run's (%s)", value, run_config)
    return float(value)


def evaluation_data(cfg: DictConfig, ckpt_path: str, hparams: Any) -> LocalizationDataModule:
    """The data module to score on: ``data=...`` from the command line, else the data settings
    the checkpoint records in ``hparams`` (its hyper-parameters: the model was trained on them),
    else, for checkpoints that do not record them, the run folder's config; both rebuilt
    through ``camlab.data.registry``."""
    loading = {k: cfg[k] for k in ("batch_size", "num_workers") if cfg.get(k) is not None}
    trained = hparams.get("data_config") if isinstance(hparams, dict) else None
    trained = trained if isinstance(trained, dict) else None  # a bad one fails in loading
    if cfg.get("data") is not None:
        datamodule = build(OmegaConf.merge(cfg.data, loading), "data")
        used = describe(datamodule)
        changed = differences(trained, used) if trained and used else []
        if changed:
            log.warning("data=... differs from the data the model was trained on: %s.",
                        "; ".join(changed))  # fmt: skip
        return datamodule
    if trained is None:  # a checkpoint from before camlab recorded its data
        run_data, run_config = run_folder_data(ckpt_path)
        if run_data is None:
            raise CamlabError(
                f"No data config: the checkpoint {ckpt_path} does not record its data and "
                f"{run_config} (the training run's config) does not exist. Name the data set the "
                "checkpoint was trained on, e.g. data=mnist_embedded."
            )
        return build_datamodule({**run_data, **loading}, str(run_config))
    try:
        run_data, run_config = run_folder_data(ckpt_path)
    except CamlabError:
        run_data = None  # unreadable: the checkpoint's own settings are used anyway
    changed = differences(trained, run_data) if run_data else []
    if changed:
        log.warning(
            "%s disagrees with the checkpoint on the data (%s): evaluating on the data settings "
            "recorded in the checkpoint, which the model was trained with.",
            run_config, "; ".join(changed),
        )  # fmt: skip
    return build_datamodule({**trained, **loading}, f"The checkpoint {ckpt_path}")


def load_classifier(ckpt_path: str, checkpoint: dict, datamodule) -> GAPClassifier:
    """The GAPClassifier of ``checkpoint`` (read with ``read_checkpoint``; a bad one raises
    CamlabError), checked against the data's classes."""
    model = GAPClassifier.from_checkpoint(checkpoint, ckpt_path, map_location="cpu")
    names = model.hparams.get("class_names")
    if model.hparams.num_classes != datamodule.num_classes or (
        names is not None and list(names) != list(datamodule.class_names)
    ):
        trained_on = ", ".join(map(str, (names or [])[:5]))
        raise CamlabError(
            f"The checkpoint {ckpt_path} was trained on another data set "
            f"({model.hparams.num_classes} classes: {trained_on}...) than "
            f"{type(datamodule).__name__} ({datamodule.num_classes} classes). Pass the data "
            "config it was trained with (data=...)."
        )
    return model.eval()


def scorable_metrics(datamodule, split: str, requested) -> set[str]:
    """``requested`` (``boxes``, ``pxap``, ``faithfulness``, ``sanity``, ``quantus``), or, when
    None, the box
    metrics and PxAP the split has labels for (faithfulness and sanity are opt-in: many more
    forward passes)."""
    has = {
        "boxes": datamodule.has_boxes(split),
        "pxap": datamodule.has_masks(split),
        "faithfulness": True,  # class labels suffice (the pointing game uses boxes or masks)
        "sanity": True,  # class labels suffice
        "quantus": True,  # class labels suffice (localisation uses masks or boxes)
    }
    opt_in = {"faithfulness", "sanity", "quantus"}  # many more forward passes
    default = {name for name, present in has.items() if present and name not in opt_in}
    wanted = default if requested is None else set(requested)
    if not wanted or not wanted <= set(has):
        raise CamlabError(
            f"metrics={None if requested is None else list(requested)}: nothing to score. Valid "
            "entries: boxes (MaxBoxAcc, Loc), pxap (needs masks), faithfulness (Average Drop, "
            "deletion / insertion, ROAD, pointing game), sanity (randomisation sanity checks), "
            "quantus (the Quantus-parity metrics); "
            f"the {split} split has "
            f"{', '.join(n for n, p in has.items() if p) or 'neither boxes nor masks'}."
        )
    for name in wanted:
        if not has[name]:
            what = "boxes" if name == "boxes" else "pixel masks"
            raise CamlabError(
                f"metrics includes {name}, but the {split} split of {type(datamodule).__name__} "
                f"has no {what}. Drop it (metrics=[{', '.join(sorted(wanted - {name}))}])."
            )
    return wanted


def evaluate(cfg: DictConfig) -> dict:
    """Scores the checkpoint's CAMs on ``cfg.split``; writes the report into the run dir."""
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    if not cfg.ckpt_path:
        raise CamlabError(
            "ckpt_path is empty; pass a checkpoint of a training run, e.g. "
            "ckpt_path=outputs/train/runs/<time>/checkpoints/last.ckpt"
        )
    checkpoint = read_checkpoint(str(cfg.ckpt_path))  # read once: data settings and weights
    datamodule = evaluation_data(cfg, str(cfg.ckpt_path), checkpoint["hyper_parameters"])

    wanted = scorable_metrics(datamodule, cfg.split, cfg.metrics)
    interval = curve_interval(cfg.cam.cam_curve_interval, str(cfg.ckpt_path))
    for method in cfg.cam.methods:
        check_method(method)  # an unknown name fails now, listing the valid ones
    classifier = load_classifier(cfg.ckpt_path, checkpoint, datamodule)
    # center / fullsup rows; fullsup trains on baselines.fullsup.train_split with a trainer like
    # the evaluation's (devices, precision, strategy).
    fullsup_trainer = None
    if "fullsup" in cfg.cam.methods:
        settings = fullsup_trainer_settings(cfg.baselines.fullsup.epochs)
        fullsup_trainer = build(cfg.trainer, "trainer", **settings)
    baselines, baseline_info = build_baselines(
        cfg.cam.methods, cfg.baselines, classifier, datamodule, cfg.split, cfg.seed,
        fullsup_trainer,
    )  # fmt: skip
    evaluation = CamEvaluation(
        classifier,
        datamodule,
        methods=cfg.cam.methods,
        cam_curve_interval=interval,
        iou_thresholds=cfg.cam.iou_thresholds,
        cam_threshold=cfg.cam.cam_threshold,
        topk=cfg.cam.topk,
        boxes="boxes" in wanted,
        masks="pxap" in wanted,
        baselines=baselines,
        channels_last=cfg.channels_last,
    )
    trainer = build(cfg.trainer, "trainer", logger=False)

    val = None
    if "faithfulness" in wanted:  # on the scored split only, not on calibrate_on's
        evaluation.enable_faithfulness(cfg.split, **cfg.faithfulness)
    if "sanity" in wanted:  # randomised copies of the classifier: it stays as it is
        evaluation.enable_sanity(cfg.split, **OmegaConf.to_container(cfg.sanity, resolve=True))
    if "quantus" in wanted:
        evaluation.enable_quantus(cfg.split, **OmegaConf.to_container(cfg.quantus, resolve=True))
    if cfg.calibrate_on:
        if "boxes" not in wanted:
            raise CamlabError("calibrate_on picks box thresholds: it needs metrics with boxes.")
        evaluation.split = cfg.calibrate_on
        trainer.test(evaluation, verbose=False)
        val = evaluation.results
    evaluation.split = cfg.split
    trainer.test(evaluation, verbose=False)
    results, rows = evaluation.results, evaluation.rows
    if not trainer.is_global_zero:
        return {}

    deltas = list(cfg.cam.iou_thresholds)
    metrics = {}
    for method, out in results["methods"].items():
        metrics[method] = report.method_metrics(out, deltas)
        if val is not None:
            calibrated = report.calibrated_metrics(out, val["methods"][method], deltas)
            metrics[method][f"calibrated_on_{cfg.calibrate_on}"] = calibrated
    summary = {
        "checkpoint": os.path.abspath(cfg.ckpt_path),
        "data": datamodule.__class__.__name__,
        "data_settings": describe(datamodule),
        "split": cfg.split,
        "num_images": len(rows),
        "cam_curve_interval": interval,
        "classification": results["classification"],
        "methods": metrics,
    }
    if baseline_info:
        summary["baselines"] = baseline_info
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))

    dataset_tau = {}
    if "boxes" in wanted:
        for method, out in results["methods"].items():
            row50 = deltas.index(50) if 50 in deltas else 0
            dataset_tau[method] = int(out["v2"]["curve"].numpy()[row50].argmax())
            report.plot_box_curves(out_dir / f"box_acc_{method}.png", method, out, deltas)
            indices = pick_examples(rows, method, cfg.num_examples)
            tau = float(out["v2"]["thresholds"][dataset_tau[method]])
            tiles = example_grid(
                classifier, datamodule, cfg.split, method, indices, tau, cfg.num_examples,
                raw_maps=evaluation.raw_maps,
            )  # fmt: skip
            write_png(tiles, str(out_dir / f"examples_{method}.png"))
        dataset = datamodule.dataset(cfg.split)  # WSOL data sets name images by relative path
        ids = (
            {r["index"]: dataset.image_id(r["index"]) for r in rows}
            if hasattr(dataset, "image_id")
            else None
        )
        report.write_per_image(
            out_dir / "per_image.csv", rows, cfg.cam.methods, ids, datamodule.class_names,
            dataset_tau,
        )  # fmt: skip
    for method, out in results["methods"].items():
        if "pxap" in out:
            report.plot_pr_curve(out_dir / f"pxap_{method}.png", method, out["pxap"])
        if "sanity" in out:
            report.plot_sanity(out_dir / f"sanity_{method}.png", method, out["sanity"])

    log_evaluation(out_dir, cfg.split, summary)  # beside the training runs in TensorBoard
    table = report.format_table(metrics, TABLE)
    cls = ", ".join(f"{k} {v:.2f}" for k, v in results["classification"].items())
    table = f"\n{table}" if any(c in m for m in metrics.values() for c in TABLE) else ""
    print(f"\n{cfg.split} split, {len(rows)} images; classification: {cls}{table}\n")
    if sanity_table := report.format_sanity_table(metrics):
        print(f"Sanity checks (similarity to the trained model's maps):\n{sanity_table}\n")
    if quantus_table := report.format_quantus_table(metrics):
        print(f"Quantus-parity metrics (mean per image):\n{quantus_table}\n")
    log.info("Evaluation written to %s", out_dir)
    return summary


def run_job(cfg: DictConfig) -> None:
    """``camlab.cli.evaluate_main``'s task: ``evaluate``, a CamlabError reported in one paragraph
    and exit status 1."""
    try:
        evaluate(cfg)
    except CamlabError as err:
        report_error(err, log)
        sys.exit(1)

"""Checks of ``GAPClassifier``'s constructor arguments, whether they come from the config or from
a checkpoint someone handed over: plain values of the right type and range, nothing else.

A checkpoint's ``hyper_parameters`` are rebuilt into a model, so they are untrusted input: a key
camlab does not know (Lightning's ``_instantiator`` names a Python callable to import and call)
or a value of another type is refused here, before anything is built.
"""

import math
from collections.abc import Mapping
from typing import Any

from camlab.checkpoint_io import is_plain
from camlab.errors import CamlabError

# Far above any classification data set (ImageNet-21k has 21,841 classes), far below sizes whose
# linear head alone would exhaust memory.
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_IMAGE_SIZE = 16_384


def _fail(name: str, value: Any, expected: str) -> CamlabError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return CamlabError(f"model.{name}={shown} must be {expected}. Fix the override or the config.")


def _int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(name, value, f"a whole number from {low} to {high}")


def _number(name: str, value: Any, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise _fail(name, value, f"a number from {low} to {high}")


def _floats(name: str, value: Any, count: int, positive: bool) -> None:
    ok = isinstance(value, list | tuple) and len(value) == count
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ok = ok and all(math.isfinite(v) and (v > 0 or not positive) for v in value)
    if not ok:
        what = "positive numbers" if positive else "numbers"
        raise _fail(name, value, f"None or a list of {count} finite {what} (one per channel)")


def check_model_args(args: Mapping[str, Any]) -> None:
    """Raises CamlabError naming the first argument of the wrong type or out of range.

    Args:
        args: ``GAPClassifier`` constructor arguments (the plain-valued ones; the optimizer and
            scheduler factories are not checked here).
    """
    for name in ("backbone", "method"):
        if not isinstance(args[name], str):
            raise _fail(name, args[name], "a name (a string)")
    _int("num_classes", args["num_classes"], 1, MAX_CLASSES)
    _int("in_channels", args["in_channels"], 1, MAX_CHANNELS)
    for name in ("pretrained", "hires_cam", "init_from_checkpoint"):
        if not isinstance(args[name], bool):
            raise _fail(name, args[name], "true or false")
    _number("backbone_lr_mult", args["backbone_lr_mult"], 0.0, 1e6)
    # torch's cross-entropy accepts label smoothing in [0, 1] only, and fails mid-step otherwise.
    _number("label_smoothing", args["label_smoothing"], 0.0, 1.0)
    for name, positive in (("mean", False), ("std", True)):
        if args[name] is not None:
            _floats(name, args[name], args["in_channels"], positive)
    names = args["class_names"]
    if names is not None and not (
        isinstance(names, list | tuple)
        and len(names) == args["num_classes"]
        and all(isinstance(n, str) for n in names)
    ):
        raise _fail("class_names", names, f"None or a list of {args['num_classes']} strings")
    if args["image_size"] is not None:
        _int("image_size", args["image_size"], 1, MAX_IMAGE_SIZE)
    params = args["method_params"]
    if params is not None and not (isinstance(params, Mapping) and is_plain(params)):
        raise _fail("method_params", params, "a mapping of plain values (configs/method/)")
    layers = args["head_layers"]
    if not (isinstance(layers, list | tuple) and all(isinstance(n, str) for n in layers)):
        raise _fail("head_layers", layers, "a list of layer names")
    _reference_args(args)
    data = args["data_config"]
    if data is not None and not (isinstance(data, Mapping) and is_plain(data)):
        raise _fail("data_config", data, "None or a mapping of plain values")


ARCHS = ("torchvision", "reference", "timm")
REFERENCE_BACKBONES = ("vgg16", "resnet50", "inception_v3")


def _reference_args(args: Mapping[str, Any]) -> None:
    """``arch`` and ``large_feature_map``, and what a reference or timm network cannot take."""
    if args["arch"] not in ARCHS:
        raise _fail("arch", args["arch"], f"one of {', '.join(ARCHS)}")
    if not isinstance(args["large_feature_map"], bool):
        raise _fail("large_feature_map", args["large_feature_map"], "true or false")
    if args["arch"] == "timm":
        for name, fix in (("hires_cam", "torchvision"), ("large_feature_map", "reference")):
            if args[name]:
                raise CamlabError(
                    f"model.{name} is an option of model.arch={fix}'s networks; timm models "
                    f"are built as timm defines them. Set model.{name}=false."
                )
        return
    if args["arch"] == "torchvision":
        if args["large_feature_map"]:
            raise CamlabError(
                "model.large_feature_map is an option of the reference's networks: add "
                "model.arch=reference (vgg16, resnet50, inception_v3), or use model.hires_cam "
                "(ResNets: last stage at stride 1)."
            )
        return
    wrong = {
        "backbone": args["backbone"] not in REFERENCE_BACKBONES,
        "in_channels": args["in_channels"] != 3,
        "hires_cam": args["hires_cam"],
        "head_layers": bool(args["head_layers"]),
        "backbone_lr_mult": args["backbone_lr_mult"] <= 0,
    }
    if any(wrong.values()):
        name = next(k for k, bad in wrong.items() if bad)
        raise CamlabError(
            f"model.arch=reference builds wsolevaluation's vgg16, resnet50 or inception_v3 for "
            f"RGB images with their own strides and learning-rate groups, so model.{name}="
            f"{args[name]!r} does not apply (backbone: one of {', '.join(REFERENCE_BACKBONES)}; "
            "in_channels 3; hires_cam false, use large_feature_map; head_layers []; "
            "backbone_lr_mult > 0). Fix the override or use model.arch=torchvision."
        )


def checkpoint_hparams(hparams: Any, path: str, known: set[str]) -> dict[str, Any]:
    """A checkpoint's ``hyper_parameters`` as constructor arguments, refusing unknown keys and
    values that are not plain (so nothing in the file chooses what gets imported or called)."""
    if not isinstance(hparams, Mapping):
        raise CamlabError(
            f"{path} holds hyper_parameters of type {type(hparams).__name__}, not a mapping: not "
            "a checkpoint written by camlab's train.py. Pass such a .ckpt file."
        )
    unknown = sorted(str(k) for k in hparams if k not in known)
    if unknown:
        raise CamlabError(
            f"Refused to load {path}: its hyper_parameters hold entries GAPClassifier does not "
            f"take ({', '.join(unknown[:5])}); such entries (e.g. Lightning's _instantiator) can "
            "name code to run, and camlab rebuilds models from its own arguments only. Use a "
            f"checkpoint written by camlab's train.py (valid entries: {', '.join(sorted(known))})."
        )
    bad = [k for k, v in hparams.items() if not is_plain(v)]
    if bad:
        raise CamlabError(
            f"Refused to load {path}: hyper-parameter {bad[0]} holds a "
            f"{type(hparams[bad[0]]).__name__}, not a plain value (number, string, list, "
            "mapping). Use a checkpoint written by camlab's train.py."
        )
    return dict(hparams)

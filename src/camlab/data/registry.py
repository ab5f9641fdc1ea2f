"""camlab's data modules by name, and rebuilding one from plain settings.

A checkpoint records the data it was trained on as ``{"module": <name>, <setting>: <value>...}``
(``describe``). Evaluation rebuilds that data module from this registry (``build_datamodule``):
a name camlab knows and the plain keyword arguments of its constructor, never a ``_target_`` or
any other callable named in a file.
"""

import inspect
from collections.abc import Mapping
from typing import Any

from camlab.checkpoint_io import is_plain
from camlab.data.base import LocalizationDataModule
from camlab.data.mnist import MNISTLocDataModule
from camlab.data.shapes import ShapesDataModule
from camlab.data.wsol import WSOLDataModule
from camlab.errors import CamlabError

DATA_MODULES: dict[str, type[LocalizationDataModule]] = {
    "mnist": MNISTLocDataModule,
    "shapes": ShapesDataModule,
    "wsol": WSOLDataModule,
}
# Settings that change how the data is loaded, not what the images are.
LOADING = ("batch_size", "num_workers", "pin_memory")
# Where the files are: machine-specific, and no difference in what the model saw.
PATHS = ("data_dir", "data_root", "metadata_root", "mask_root", "download")


def describe(datamodule: LocalizationDataModule) -> dict[str, Any] | None:
    """``{"module": <registry name>, **constructor arguments}`` of one of camlab's data modules;
    None for others (a subclass of the user's): evaluation then needs ``data=...``."""
    for name, cls in DATA_MODULES.items():
        if type(datamodule) is cls:
            return {"module": name, **datamodule.settings}
    return None


def from_target(node: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A data config node (``_target_`` + arguments, e.g. a run folder's ``.hydra``) as the
    settings ``build_datamodule`` takes; the ``_target_`` must be one of ``DATA_MODULES``."""
    target = node.get("_target_")
    for name, cls in DATA_MODULES.items():
        if target == f"{cls.__module__}.{cls.__name__}":
            settings = {k: v for k, v in node.items() if not str(k).startswith("_")}
            return {"module": name, **settings}
    valid = ", ".join(f"{c.__module__}.{c.__name__}" for c in DATA_MODULES.values())
    raise CamlabError(
        f"{source}: data._target_={target!r} is not one of camlab's data modules ({valid}). "
        "camlab builds only those from a run folder; pass the data set on the command line "
        "instead (e.g. data=mnist_embedded)."
    )


def build_datamodule(settings: Mapping[str, Any], source: str) -> LocalizationDataModule:
    """Builds the data module ``settings["module"]`` names with the other entries as arguments.

    Args:
        settings: ``{"module": <name in DATA_MODULES>, <argument>: <plain value>...}``.
        source: where the settings come from, for errors (e.g. "the checkpoint x.ckpt").
    """
    if not isinstance(settings, Mapping):
        raise CamlabError(f"{source}: the data settings are not a mapping.")
    name = settings.get("module")
    if not isinstance(name, str) or name not in DATA_MODULES:
        raise CamlabError(
            f"{source}: data module {name!r} is not one of camlab's ({', '.join(DATA_MODULES)}). "
            "Pass the data set on the command line instead (e.g. data=mnist_embedded)."
        )
    cls = DATA_MODULES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in settings.items() if k != "module"}
    unknown = sorted(str(k) for k in kwargs if k not in accepted)
    bad = sorted(str(k) for k, v in kwargs.items() if not is_plain(v, max_depth=1, mappings=False))
    if unknown or bad:
        what = f"unknown settings {unknown}" if unknown else f"settings that are not plain {bad}"
        raise CamlabError(
            f"{source}: the {name} data settings hold {what}. Valid settings of "
            f"{cls.__name__}: {', '.join(sorted(accepted))}. Pass the data set on the command "
            "line instead (e.g. data=mnist_embedded)."
        )
    try:
        return cls(**kwargs)
    except TypeError as err:  # a value of a type the constructor cannot use
        raise CamlabError(f"{source}: invalid {name} data settings ({err}).") from None


def differences(trained: Mapping[str, Any], used: Mapping[str, Any]) -> list[str]:
    """``"key: used (trained: value)"`` for each setting that changes the images or labels."""
    keys = sorted(set(trained) | set(used))
    return [
        f"{k}={used.get(k)!r} (trained with {trained.get(k)!r})"
        for k in keys
        if k not in (*LOADING, *PATHS) and _norm(trained.get(k)) != _norm(used.get(k))
    ]


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

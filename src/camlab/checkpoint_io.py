"""Checkpoint files: atomic writes, and reads that never run code from the file.

A ``.ckpt`` is a pickle; ``torch.load(weights_only=False)`` executes whatever callables it names,
so a crafted file runs code on load. Every camlab entry point reads checkpoints through
``read_checkpoint`` (``weights_only=True``: tensors, containers and plain values only) and
Lightning's resume through ``AtomicCheckpointIO.load_checkpoint`` (the same).
"""

import math
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from camlab.errors import CamlabError

# What a Lightning checkpoint of a GAPClassifier holds, at the least.
REQUIRED_KEYS = ("state_dict", "hyper_parameters")
MAX_DEPTH = 6  # nesting of plain containers (method_params, data_config)


def is_plain(value: Any, max_depth: int = MAX_DEPTH, mappings: bool = True) -> bool:
    """Whether ``value`` is None, a bool, int, finite float or str, or a list/tuple (and, with
    ``mappings``, a str-keyed mapping) of such values, nested at most ``max_depth`` levels:
    what camlab accepts from a file as an argument, since nothing in it can name code."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if max_depth <= 0:
        return False
    if isinstance(value, list | tuple):
        return all(is_plain(v, max_depth - 1, mappings) for v in value)
    if mappings and isinstance(value, Mapping):
        return all(
            isinstance(k, str) and is_plain(v, max_depth - 1, mappings) for k, v in value.items()
        )
    return False


def read_checkpoint(path: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` and checks it is a camlab/Lightning one.

    Raises:
        CamlabError: missing, empty, truncated or foreign file, or one that needs code to load.
    """
    if os.path.isdir(path):
        raise CamlabError(
            f"ckpt_path={path} is a folder, not a checkpoint file; give the path of a .ckpt "
            f"file in it, e.g. ckpt_path={os.path.join(path, 'last.ckpt')}."
        )
    if not os.path.isfile(path):
        raise CamlabError(f"ckpt_path={path} does not exist; give the path of a .ckpt file.")
    if os.path.getsize(path) == 0:
        raise CamlabError(
            f"The checkpoint {path} is empty (0 bytes): it was never written completely. Use "
            "another checkpoint of the run (checkpoints/last.ckpt or epoch_*.ckpt)."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):  # a damaged file, not a refused global
            raise _unreadable(path, err) from None
        # torch's message names the global the file asked for (e.g. "GLOBAL builtins.exec"); its
        # advice to allow-list that global is left out: that is what would run the code.
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        first = f"it names {named.group(1)}" if named else "it names a Python callable"
        raise CamlabError(
            f"Refused to load {path}: it holds objects other than tensors and plain values, and "
            f"loading them would run code from the file ({first}). camlab loads checkpoints "
            "with torch.load(weights_only=True) only; use a checkpoint written by camlab's "
            "train.py, or re-save a trusted one as a plain state dict."
        ) from None
    except Exception as err:  # noqa: BLE001 - the unpickler fails in many ways on other files
        raise _unreadable(path, err) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        what = f"a {type(checkpoint).__name__}" if not isinstance(checkpoint, dict) else "a dict"
        raise CamlabError(
            f"{path} is {what} without {', '.join(missing)}: not a checkpoint written by camlab's "
            "train.py (a Lightning checkpoint of GAPClassifier). Pass such a .ckpt file."
        )
    return checkpoint


def _unreadable(path: str, err: Exception) -> CamlabError:
    # The first sentence of torch's reason (its messages run on), without "XError:" prefixes.
    detail = (str(err).strip().splitlines() or ["truncated file"])[0].split(". ")[0].rstrip(".")
    return CamlabError(
        f"{path} is not a readable PyTorch checkpoint (torch.load: {detail}). It may "
        "be truncated (a copy or download that did not finish) or another kind of file; use the "
        "run's checkpoints/last.ckpt or an epoch_*.ckpt."
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic (the old ``last.ckpt`` stays intact until the
    new one is complete on disk) and whose reads (``trainer.fit(ckpt_path=...)``) never run code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str, storage_options=None) -> None:
        tmp = f"{path}.tmp"
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return read_checkpoint(str(path), map_location if map_location is not None else "cpu")

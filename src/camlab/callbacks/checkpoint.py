"""ModelCheckpoint whose ``last.ckpt`` is rewritten after every epoch, and whose state restored
from a checkpoint never names a file outside the run's own checkpoint folder."""

import logging
import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)
PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")
SCORE_KEYS = ("best_model_score", "kth_value", "current_score")


class LastEveryEpochCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, except that ``save_last`` always means the latest epoch,
    and that paths read back from a checkpoint are trusted only inside ``dirpath``.

    Since Lightning 2.5 ``last.ckpt`` is only rewritten when a top-k checkpoint was saved in the
    same step, i.e. when the monitored metric improved: a run whose metric stalls keeps an old
    ``last.ckpt`` and a resume after a kill repeats epochs. Here ``last.ckpt`` is written at the
    end of every epoch (after validation, or after the train epoch when the checkpoint is
    configured to save there), whatever the metric did.

    On resume Lightning restores the previous ``last_model_path`` and top-k paths from the file
    and later deletes them (recursively, without resolving ``..``): a handed-over checkpoint
    could name any file or folder. Paths that do not resolve to a file directly inside this
    run's ``dirpath`` are dropped with a warning, and nothing outside it is ever removed.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer: pl.Trainer) -> None:
        # Skipped when the parent saved at this step already (then last.ckpt is current too),
        # during sanity checks, outside fit and with fast_dev_run.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def owns(self, path: Any) -> bool:
        """Whether ``path`` is a local file name directly inside this run's ``dirpath`` (after
        resolving ``..`` and symbolic links), i.e. one of its own checkpoints."""
        if not isinstance(path, str) or not path or self.dirpath is None or "://" in path:
            return False
        real = os.path.realpath(path)
        return os.path.dirname(real) == os.path.realpath(self.dirpath) and not os.path.isdir(real)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict):
            log.warning("Ignored the checkpoint's ModelCheckpoint state: not a mapping.")
            return
        state, dropped = dict(state_dict), []
        for key in PATH_KEYS:
            if state.get(key) and not self.owns(state[key]):
                dropped.append(f"{key}={state[key]!r}")
                state[key] = ""
        best_k = state.get("best_k_models")
        best_k = best_k if isinstance(best_k, dict) else {}
        state["best_k_models"] = {
            p: s for p, s in best_k.items() if self.owns(p) and isinstance(s, torch.Tensor)
        }
        dropped += [f"best_k_models[{p!r}]" for p in best_k if p not in state["best_k_models"]]
        for key in SCORE_KEYS:
            if not (state.get(key) is None or isinstance(state.get(key), torch.Tensor)):
                dropped.append(f"{key}={state[key]!r}")
                state[key] = None
        if state.get("last_model_path") == "" and self.dirpath is not None:
            # This run's own last.ckpt: rewritten in place, not versioned as last-v1.ckpt.
            state["last_model_path"] = os.path.join(
                self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION
            )
        state["best_model_score"] = state.get("best_model_score")
        if state.get("kth_value") is None:
            state.pop("kth_value", None)  # keep the mode's initial +-inf
        if dropped:
            log.warning(
                "The checkpoint's ModelCheckpoint state names files outside this run's checkpoint "
                "folder %s (or values of the wrong type); ignored, so nothing there is overwritten "
                "or removed: %s",
                self.dirpath,
                "; ".join(dropped),
            )
        super().load_state_dict(state)

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not self.owns(filepath):  # a second guard, whatever set the path
            log.warning("Kept %s: it is not a checkpoint file inside %s.", filepath, self.dirpath)
            return
        super()._remove_checkpoint(trainer, filepath)

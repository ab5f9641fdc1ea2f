"""ModelCheckpoint whose ``last.ckpt`` is rewritten after every epoch."""

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class LastEveryEpochCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, except that ``save_last`` always means the latest epoch.

    Since Lightning 2.5 ``last.ckpt`` is only rewritten when a top-k checkpoint was saved in the
    same step, i.e. when the monitored metric improved: a run whose metric stalls keeps an old
    ``last.ckpt`` and a resume after a kill repeats epochs. Here ``last.ckpt`` is written at the
    end of every epoch (after validation, or after the train epoch when the checkpoint is
    configured to save there), whatever the metric did.
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

"""One line per training epoch in the Python log (Hydra writes it to the run's train.log)."""

from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from camlab.callbacks.cam_panel import logger_step

log = logging.getLogger(__name__)


class EpochSummary(Callback):
    """Logs ``epoch e/E step s (t s): train/... | val/...`` at the end of every training epoch.

    The line holds the epoch's training metrics (``*_epoch`` values under their plain names;
    per-step values left out) and, when validation ran in this epoch, every ``val/*`` metric;
    it goes to the ``logging`` logger of this module at INFO, which Hydra's job logging sends
    to ``train.log`` and the console. ``s`` is the TensorBoard step of the epoch's scalars.

    Every rank reads ``trainer.callback_metrics`` (that computes the epoch's torchmetrics
    objects, a DDP all-gather, so all ranks must do it in the same hook), only global rank 0
    writes the line.

    Args:
        digits: significant digits per value.
    """

    def __init__(self, digits: int = 4) -> None:
        super().__init__()
        self.digits = digits
        self._validated_epoch: int | None = None
        self._epoch_start = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        if trainer.is_global_zero:
            log.info("%s", self.line(trainer, metrics, time.monotonic() - self._epoch_start))

    def line(self, trainer: pl.Trainer, metrics: dict[str, float], seconds: float) -> str:
        """The summary of ``metrics`` (``trainer.callback_metrics`` as floats)."""
        train: dict[str, float] = {}
        for name, value in metrics.items():
            if not name.startswith("train/") or name.endswith("_step"):
                continue
            plain = name.removesuffix("_epoch")
            if name.endswith("_epoch") or plain not in train:
                train[plain] = value
        validated = self._validated_epoch == trainer.current_epoch
        val = {n: v for n, v in metrics.items() if validated and n.startswith("val/")}
        epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        # Lightning has counted this epoch's last batch already; its epoch scalars (and the
        # validation's) are logged one step back.
        step = logger_step(trainer) - 1
        head = f"epoch {trainer.current_epoch + 1}/{epochs} step {step} ({seconds:.0f} s)"
        parts = [head + ":", self._format(train)]
        if val:
            parts += ["|", self._format(val)]
        return " ".join(p for p in parts if p)

    def _format(self, values: dict[str, float]) -> str:
        def number(v: float) -> str:
            return f"{v:.{self.digits}g}" if math.isfinite(v) else str(v)

        return " ".join(f"{name} {number(values[name])}" for name in sorted(values))

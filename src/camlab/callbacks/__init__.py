"""Lightning callbacks: CAM panels in TensorBoard, WSOL localisation metrics on validation and
a one-line summary per epoch in the log."""

from camlab.callbacks.cam_panel import CAMPanel
from camlab.callbacks.checkpoint import LastEveryEpochCheckpoint
from camlab.callbacks.epoch_summary import EpochSummary
from camlab.callbacks.val_localization import ValLocalization

__all__ = ["CAMPanel", "EpochSummary", "LastEveryEpochCheckpoint", "ValLocalization"]

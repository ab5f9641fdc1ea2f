"""Lightning callbacks: CAM panels in TensorBoard and WSOL localisation metrics on validation."""

from camlab.callbacks.cam_panel import CAMPanel
from camlab.callbacks.checkpoint import LastEveryEpochCheckpoint
from camlab.callbacks.val_localization import ValLocalization

__all__ = ["CAMPanel", "LastEveryEpochCheckpoint", "ValLocalization"]

"""Checkpoints are written to a temporary file and renamed, so a kill never leaves half a file."""

import os
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic: the old checkpoint (e.g. ``last.ckpt``)
    stays intact until the new one is complete on disk."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str, storage_options=None) -> None:
        tmp = f"{path}.tmp"
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

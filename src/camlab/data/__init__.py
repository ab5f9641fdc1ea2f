"""Data modules whose batches carry images, labels and ground-truth boxes (and masks)."""

from camlab.data.base import LocalizationDataModule
from camlab.data.mnist import MNISTLocDataModule
from camlab.data.shapes import ShapesDataModule

__all__ = ["LocalizationDataModule", "MNISTLocDataModule", "ShapesDataModule"]

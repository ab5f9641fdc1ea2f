"""A data module for the DDP equality test (imported by train.py through PYTHONPATH)."""

from camlab.data import ShapesDataModule


class FixedShapesDataModule(ShapesDataModule):
    """Shapes whose training images are fixed per index, like val/test.

    The stock training split draws each image from the process's torch RNG. DDP ranks are
    seeded alike, so a 2-process run would see other images than a 1-process run.
    """

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.splits["train"].seed = 2 * self.seed + 3

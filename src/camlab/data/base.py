"""What every camlab data module provides beyond Lightning's: class names and normalisation."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from camlab.errors import CamlabError


def check_count(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else a CamlabError naming ``data.<name>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CamlabError(
            f"data.{name}={value!r} must be a whole number >= {minimum}. Fix the override "
            f"(e.g. data.{name}={max(minimum, 1)})."
        )
    return value


class LocalizationDataModule(pl.LightningDataModule):
    """Base of the data modules. Batches are dicts with

    - ``image``: float ``[B, C, H, W]``, normalised with ``mean``/``std``;
    - ``label``: int64 ``[B]``;
    - ``box``: int64 ``[B, K, 4]`` ground-truth boxes ``(x0, y0, x1, y1)``, inclusive pixels in
      the image's frame; rows of ``-1`` pad images with fewer than ``K`` boxes;
    - ``index``: int64 ``[B]`` position in the split (fixed, for per-image reports);
    - ``mask`` (data sets with pixel masks): uint8 ``[B, H, W]``, 1 = object, 0 = background,
      255 = ignored.

    Subclasses set ``class_names``, ``in_channels``, ``mean``, ``std``, ``image_size`` and fill
    ``self.splits`` (``"train"``, ``"val"``, ``"test"`` -> Dataset) in ``setup``.
    """

    class_names: list[str]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    # Batches of items with different box counts need a padding collate (WSOL data sets).
    collate_fn = None

    def __init__(self, batch_size: int = 64, num_workers: int = 2, pin_memory: bool = False):
        super().__init__()
        self.settings: dict = {}  # constructor arguments, set by subclasses (_remember)
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.num_workers = check_count("num_workers", num_workers, 0)
        self.pin_memory = pin_memory
        self.splits: dict[str, Dataset] = {}

    def _remember(self, args: dict) -> None:
        """Keeps the constructor's arguments (its ``locals()`` before any other local is set)
        as ``self.settings``:
        plain values a checkpoint stores, from which ``camlab.data.registry`` rebuilds this
        module without instantiating anything a file names."""
        self.settings = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in args.items()
            if k not in ("self", "__class__")
        }

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset(self, split: str) -> Dataset:
        """The split's Dataset (``train``, ``val`` or ``test``), set up on first use."""
        if split not in self.splits:
            self.setup("fit" if split in ("train", "val") else "test")
        return self.splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        sampler = None
        dist = torch.distributed
        distributed = not shuffle and dist.is_available() and dist.is_initialized()
        if distributed and dist.get_world_size() > 1:
            # Lightning's DistributedSampler pads the split with repeated images up to a multiple
            # of the world size, which metrics would count twice: each image once, on one rank.
            sampler = UnrepeatedDistributedSampler(
                dataset, dist.get_world_size(), dist.get_rank(), shuffle=False
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            collate_fn=type(self).collate_fn,
        )

    def has_boxes(self, split: str) -> bool:
        """Whether the split's items carry ground-truth boxes (box metrics need them)."""
        box = self.dataset(split)[0]["box"]
        return bool((torch.as_tensor(box).reshape(-1, 4)[:, 0] >= 0).any())

    def has_masks(self, split: str) -> bool:
        """Whether the split's items carry ``mask`` (PxAP needs it)."""
        return "mask" in self.dataset(split)[0]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

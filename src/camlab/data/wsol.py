"""CUB, ImageNet and OpenImages in the wsolevaluation layout (Choe et al., CVPR 2020).

Images live under a data root (``dataset/CUB/<relative path>``), the metadata files under
``<metadata_root>/{train,val,test}/`` (see ``camlab.data.wsol_metadata``). Images are brought to
the S x S evaluation frame as the reference does: val/test are resized to (S, S), aspect not kept;
boxes are rescaled with ``int(x * S / W)``; masks are resized with nearest neighbour.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from camlab.data.base import LocalizationDataModule
from camlab.data.wsol_metadata import SplitMetadata, check_labels, read_lines, read_split
from camlab.errors import CamlabError
from camlab.imagenet import IMAGENET_MEAN, IMAGENET_STD
from camlab.protocol import collate, rescale_boxes, resize_masks

SPLITS = ("train", "val", "test")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
# The wsolevaluation script that downloads each data set's images into dataset/<name>.
PREPARE = {
    "CUB": "dataset/prepare_cub.sh",
    "ILSVRC": "dataset/prepare_imagenet.sh (after putting ImageNet's ILSVRC2012_img_train.tar "
    "and ILSVRC2012_img_val.tar from image-net.org in dataset/)",
    "OpenImages": "dataset/prepare_openimages.sh",
}


def read_mask(path: str, size: int) -> np.ndarray:
    """bool ``[size, size]``: pixels > 0.5 of the grayscale PNG after a nearest resize, as the
    reference's ``load_mask_image``."""
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        what = "does not exist" if not os.path.exists(path) else "cannot be read as an image"
        raise CamlabError(
            f"Mask {path} {what}; mask paths in localization.txt are relative to data.mask_root."
        )
    return resize_masks(torch.from_numpy(mask)[None], (size, size))[0].numpy()


class WSOLDataset(Dataset):
    """One split. Items: ``image`` float ``[3, S, S]``, ``label``, ``index``, ``box`` int64
    ``[K, 4]`` in the S x S frame (K = 0 without boxes) and, with masks, ``mask`` uint8
    ``[S, S]`` (1 object, 0 background, 255 ignored).

    Args:
        meta: the split's metadata.
        data_root, mask_root: folders the image and mask paths are relative to.
        transform: PIL image -> normalised tensor.
        image_size: S.
        localization: give boxes/masks (val, test); train items carry none, their random crops
            and flips would move them.
    """

    def __init__(
        self,
        meta: SplitMetadata,
        data_root: str,
        mask_root: str,
        transform,
        image_size: int,
        localization: bool,
    ) -> None:
        self.data_root, self.mask_root = data_root, mask_root
        self.transform, self.image_size = transform, image_size
        self.ids_file = meta.file("image_ids.txt")
        self.sizes_file = meta.file("image_sizes.txt")
        # UTF-8 bytes in one numpy array, not a list of str: forked loader workers then share
        # its pages (no refcount writes), and it is 4x smaller than numpy's unicode (ImageNet).
        self.image_ids = np.array([image_id.encode() for image_id in meta.image_ids])
        self.labels = meta.labels
        self.has_boxes = localization and meta.boxes is not None
        self.has_masks = localization and meta.mask_paths is not None
        self.sizes = meta.sizes if localization else None
        self.boxes = (
            [rescale_boxes(torch.from_numpy(b), (int(w), int(h)), image_size)
             for b, (w, h) in zip(meta.boxes, meta.sizes, strict=True)]
            if self.has_boxes else None
        )  # fmt: skip
        self.mask_paths = meta.mask_paths if self.has_masks else None
        self.ignore_paths = meta.ignore_paths if self.has_masks else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_id(self, i: int) -> str:
        """The relative path of image ``i``, as in ``image_ids.txt``."""
        return self.image_ids[i].decode()

    def _image(self, i: int) -> Image.Image:
        path = os.path.join(self.data_root, self.image_id(i))
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise CamlabError(
                f"Image {path} does not exist: {self.ids_file} lists '{self.image_id(i)}', and "
                f"image paths are relative to data.data_root={self.data_root}."
            ) from None
        except (UnidentifiedImageError, OSError) as err:
            raise CamlabError(f"Image {path} cannot be read ({err}).") from None
        if self.sizes is not None and rgb.size != tuple(self.sizes[i]):
            w, h = self.sizes[i]
            raise CamlabError(
                f"Image {path} is {rgb.size[0]}x{rgb.size[1]} pixels but {self.sizes_file} gives "
                f"{w}x{h}: its boxes would be rescaled wrongly. Fix that line (path,width,height)."
            )
        return rgb

    def _mask(self, i: int) -> torch.Tensor:
        size = self.image_size
        # Foreground: union of the instance masks; ignored: the ignore region minus foreground.
        foreground = np.zeros((size, size), bool)
        for path in self.mask_paths[i]:
            foreground |= read_mask(os.path.join(self.mask_root, path), size)
        mask = foreground.astype(np.uint8)
        if self.ignore_paths[i]:
            ignore = read_mask(os.path.join(self.mask_root, self.ignore_paths[i]), size)
            mask[ignore & ~foreground] = 255
        return torch.from_numpy(mask)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "image": self.transform(self._image(i)),
            "label": torch.tensor(int(self.labels[i])),
            "box": self.boxes[i] if self.has_boxes else torch.zeros((0, 4), dtype=torch.int64),
            "index": torch.tensor(i),
        }
        if self.has_masks:
            item["mask"] = self._mask(i)
        return item


class WSOLDataModule(LocalizationDataModule):
    """A WSOL benchmark in the wsolevaluation layout: CUB, ImageNet (ILSVRC), OpenImages.

    Train images: Resize((resize_size, resize_size)), RandomCrop(image_size) and
    RandomHorizontalFlip, as the reference trains; they carry labels only. Val ("train-fullsup")
    and test images: Resize((image_size, image_size)), with boxes or masks in that frame.

    Args:
        data_root: folder the image paths are relative to (e.g. ``dataset/CUB``).
        metadata_root: folder holding the ``train``, ``val`` and ``test`` metadata folders.
        mask_root: folder the mask paths are relative to; default ``data_root``.
        name: the data set's name in messages (``CUB``, ``ILSVRC``, ``OpenImages``).
        image_size: side S of the val/test images and of the train crops.
        resize_size: side of the train images before the random crop.
        num_classes: class count; default: the lines of ``<metadata_root>/class_names.txt``
            (one name a line, also the class names), else the largest train label + 1.
        batch_size, num_workers, pin_memory: data loader settings.
    """

    collate_fn = staticmethod(collate)  # a variable number of boxes per image

    in_channels = 3
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(
        self,
        data_root: str,
        metadata_root: str,
        mask_root: str | None = None,
        name: str = "WSOL",
        image_size: int = 224,
        resize_size: int = 256,
        num_classes: int | None = None,
        batch_size: int = 32,
        num_workers: int = 4,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        self._remember(locals())
        if resize_size < image_size:
            raise CamlabError(
                f"data.resize_size={resize_size} is smaller than data.image_size={image_size}: "
                "train images are resized to resize_size and then cropped to image_size."
            )
        self.data_root, self.metadata_root = str(data_root), str(metadata_root)
        self.mask_root = str(mask_root) if mask_root else self.data_root
        self.name, self.image_size, self.resize_size = name, image_size, resize_size
        self._num_classes = num_classes
        self._class_names: list[str] | None = None
        self._class_source = ""
        self._meta: dict[str, SplitMetadata] = {}

    # -- data set presence and metadata --------------------------------------------------------

    def _missing(self, path: str) -> CamlabError:
        script = PREPARE.get(self.name, "dataset/prepare_<name>.sh")
        return CamlabError(
            f"The {self.name} data set was not found: {path} does not exist. Get it from the "
            f"wsolevaluation repository (https://github.com/clovaai/wsolevaluation): {script} "
            f"downloads the images into dataset/{self.name}, and its metadata/{self.name} folder "
            f"holds the metadata (train/val/test). Put them at data.data_root={self.data_root} "
            f"and data.metadata_root={self.metadata_root} (paths.data_dir=<your wsolevaluation "
            "clone> matches its layout). Without it, data=mnist_embedded or data=shapes work "
            "offline."
        )

    def _check_present(self) -> None:
        for path in (self.data_root, self.metadata_root, self.mask_root):
            if not os.path.isdir(path):
                raise self._missing(path)

    def _metadata(self, split: str) -> SplitMetadata:
        if split not in self._meta:
            self._check_present()
            directory = os.path.join(self.metadata_root, split)
            if not os.path.isfile(os.path.join(directory, "image_ids.txt")):
                raise self._missing(os.path.join(directory, "image_ids.txt"))
            self._meta[split] = read_split(directory, localization=split != "train")
        return self._meta[split]

    @property
    def class_names(self) -> list[str]:
        """From ``class_names.txt``, else ``class_<i>``; reads the train labels when needed."""
        if self._class_names is None:
            self._check_present()
            names_file = os.path.join(self.metadata_root, "class_names.txt")
            if os.path.isfile(names_file):
                names = [text for _, text in read_lines(names_file) if text]
                if self._num_classes is not None and self._num_classes != len(names):
                    raise CamlabError(
                        f"data.num_classes={self._num_classes}, but {names_file} names "
                        f"{len(names)} classes. Drop one of them or make them agree."
                    )
                self._class_source = f"the names in {names_file}"
            elif self._num_classes is not None:
                names = [f"class_{i}" for i in range(self._num_classes)]
                self._class_source = "data.num_classes"
            else:
                count = int(self._metadata("train").labels.max()) + 1
                names = [f"class_{i}" for i in range(count)]
                self._class_source = "the largest train label + 1; set data.num_classes"
            self._class_names = names
        return self._class_names

    # -- splits and loaders --------------------------------------------------------------------

    def _transform(self, split: str):
        normalize = [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        if split == "train":
            return transforms.Compose([
                transforms.Resize((self.resize_size, self.resize_size)),
                transforms.RandomCrop(self.image_size),
                transforms.RandomHorizontalFlip(),
                *normalize,
            ])  # fmt: skip
        return transforms.Compose([transforms.Resize((self.image_size,) * 2), *normalize])

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage or "", SPLITS):
            if split in self.splits:
                continue
            meta = self._metadata(split)
            check_labels(meta, self.num_classes, self._class_source)
            self.splits[split] = WSOLDataset(
                meta, self.data_root, self.mask_root, self._transform(split), self.image_size,
                localization=split != "train",
            )  # fmt: skip
            self._meta.pop(split)  # the dataset keeps what it needs

    def has_boxes(self, split: str) -> bool:
        """Whether the split's items carry boxes (val/test of a box data set)."""
        return self.dataset(split).has_boxes

    def has_masks(self, split: str) -> bool:
        """Whether the split's items carry ``mask`` (val/test of a mask data set)."""
        return self.dataset(split).has_masks

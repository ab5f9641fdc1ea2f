"""WSOLDataModule on tiny data sets written in the exact wsolevaluation metadata format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from wsol_fake import COLORS, make_box_dataset, make_mask_dataset, write_lines

from camlab.cam.overlay import denormalize
from camlab.data.wsol import WSOLDataModule
from camlab.errors import CamlabError
from camlab.protocol import collate

ROOT = Path(__file__).resolve().parents[2]


def box_module(root: Path, **kwargs) -> WSOLDataModule:
    return WSOLDataModule(
        data_root=str(root / "dataset" / "CUB"), metadata_root=str(root / "metadata" / "CUB"),
        name="CUB", batch_size=3, num_workers=0, **kwargs,
    )  # fmt: skip


def mask_module(root: Path) -> WSOLDataModule:
    data = str(root / "dataset" / "OpenImages")
    return WSOLDataModule(
        data_root=data, metadata_root=str(root / "metadata" / "OpenImages"), mask_root=data,
        name="OpenImages", batch_size=3, num_workers=0,
    )  # fmt: skip


@pytest.fixture
def boxes_root(tmp_path) -> Path:
    make_box_dataset(tmp_path)
    return tmp_path


@pytest.fixture
def masks_root(tmp_path) -> Path:
    make_mask_dataset(tmp_path)
    return tmp_path


def test_val_batch_boxes_are_rescaled_as_the_reference(boxes_root):
    dm = box_module(boxes_root)
    assert dm.class_names == ["class_0", "class_1", "class_2"] and dm.num_classes == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (3, 3, 224, 224) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1, 2] and batch["label"].dtype == torch.int64
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.int64
    assert batch["box"].dtype == torch.int64 and batch["box"].shape == (3, 2, 4)
    # int(x * 224 / W), int(y * 224 / H), by hand: 300x200, 150x250 (two boxes), 224x224.
    assert batch["box"].tolist() == [
        [[22, 44, 111, 133], [-1, -1, -1, -1]],
        [[0, 0, 110, 88], [119, 134, 222, 223]],
        [[50, 60, 150, 170], [-1, -1, -1, -1]],
    ]
    assert "mask" not in batch and dm.has_boxes("val") and not dm.has_masks("val")
    # image and boxes share the frame: the centre of each box has the class colour
    images = denormalize(batch["image"], dm.mean, dm.std).float()  # uint8 RGB values
    for b, label in enumerate(batch["label"].tolist()):
        x0, y0, x1, y1 = batch["box"][b, 0].tolist()
        pixel = images[b, :, (y0 + y1) // 2, (x0 + x1) // 2]
        assert torch.allclose(pixel, torch.tensor(COLORS[label], dtype=torch.float32), atol=2)


def test_train_batch_is_cropped_and_carries_no_boxes(boxes_root):
    dm = box_module(boxes_root, resize_size=256)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 224, 224)
    assert (batch["box"] == -1).all() and batch["box"].shape == (3, 1, 4)
    assert not dm.has_boxes("train") and len(dm.dataset("train")) == 6
    assert dm.dataset("train").labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert dm.mean == (0.485, 0.456, 0.406) and dm.in_channels == 3 and dm.image_size == 224


def test_test_split_and_collate_of_items_without_boxes(boxes_root):
    dm = box_module(boxes_root)
    item = dm.dataset("test")[1]  # 200x120, box (100, 20, 199, 119)
    assert item["box"].tolist() == [[112, 37, 222, 222]]
    empty = {**item, "box": torch.zeros((0, 4), dtype=torch.int64)}
    assert collate([empty, empty])["box"].tolist() == [[[-1] * 4], [[-1] * 4]]


def test_masks_union_and_ignore_region(masks_root):
    dm = mask_module(masks_root)
    batch = next(iter(dm.val_dataloader()))
    assert batch["mask"].shape == (3, 224, 224) and batch["mask"].dtype == torch.uint8
    assert dm.has_masks("val") and not dm.has_boxes("val") and dm.has_masks("test")
    assert batch["box"].shape == (3, 1, 4) and (batch["box"] == -1).all()
    # a: 112x56 -> 224x224 (nearest, x2 and x4): object at x 20..79, y 20..99; ignore x 60..119.
    a = np.zeros((224, 224), np.uint8)
    a[:, 60:120] = 255
    a[20:100, 20:80] = 1  # the object wins over the ignore region where they overlap
    # b: 448x224 -> 224x224 (x/2): two objects, ignore x 100..223 minus the second object.
    b = np.zeros((224, 224), np.uint8)
    b[:, 100:] = 255
    b[0:100, 0:50] = 1
    b[100:200, 150:200] = 1
    # c: no ignore path: only 0 and 1.
    c = np.zeros((224, 224), np.uint8)
    c[50:100, 50:100] = 1
    assert np.array_equal(batch["mask"].numpy(), np.stack([a, b, c]))


def test_missing_data_set_names_the_folder_and_how_to_get_it(tmp_path):
    dm = box_module(tmp_path / "nowhere")
    with pytest.raises(CamlabError) as err:
        dm.class_names  # noqa: B018
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "dataset" / "CUB") in msg
    assert "wsolevaluation" in msg and "prepare_cub.sh" in msg and "metadata/CUB" in msg
    assert "data=mnist_embedded" in msg and "data=shapes" in msg


def test_missing_split_folder_names_it(boxes_root):
    (boxes_root / "metadata" / "CUB" / "test" / "image_ids.txt").unlink()
    dm = box_module(boxes_root)
    with pytest.raises(CamlabError, match="test/image_ids.txt does not exist"):
        dm.dataset("test")


def test_missing_image_and_wrong_size_fail_at_access_naming_the_path(boxes_root):
    dm = box_module(boxes_root)
    image = boxes_root / "dataset" / "CUB" / "1.green" / "val_1.png"
    image.unlink()
    dataset = dm.dataset("val")
    with pytest.raises(CamlabError, match=f"Image {image} does not exist"):
        dataset[1]
    sizes = boxes_root / "metadata" / "CUB" / "val" / "image_sizes.txt"
    lines = sizes.read_text().splitlines()
    write_lines(sizes, [lines[0].replace("300,200", "200,300"), *lines[1:]])
    with pytest.raises(CamlabError, match="is 300x200 pixels but .*image_sizes.txt gives 200x300"):
        box_module(boxes_root).dataset("val")[0]


def test_missing_mask_file_names_the_path(masks_root):
    mask = masks_root / "dataset" / "OpenImages" / "val" / "1.green" / "b_m1.png"
    mask.unlink()
    with pytest.raises(CamlabError, match=f"Mask {mask} does not exist"):
        mask_module(masks_root).dataset("val")[1]


def edit(path: Path, line: int, text: str | None) -> None:
    """Replaces (or, with None, deletes) the 1-based ``line`` of ``path``."""
    lines = path.read_text().splitlines()
    lines[line - 1 : line] = [] if text is None else [text]
    write_lines(path, lines)


V0, V1 = "0.red/val_0.png", "1.green/val_1.png"
BAD_METADATA = [
    # (file, line, new text or None, file named in the error, its line, expected words)
    ("class_labels.txt", 1, f"{V0},0,5", "class_labels.txt", 1, "expected 2 comma-separated"),
    ("class_labels.txt", 2, f"{V1},one", "class_labels.txt", 2, "label must be an integer"),
    ("class_labels.txt", 3, "2.blue/val_2.png,7", "class_labels.txt", 3, "label 7 of"),
    ("class_labels.txt", 2, None, "image_ids.txt", 2, "has no line in"),
    ("image_sizes.txt", 2, None, "image_ids.txt", 2, "image_sizes.txt"),
    ("image_sizes.txt", 1, f"{V0},300,0", "image_sizes.txt", 1, "height must be >= 1"),
    ("image_ids.txt", 3, V0, "image_ids.txt", 3, "listed twice (line 1)"),
    ("localization.txt", 1, f"{V0},30,4x,149,119", "localization.txt", 1, "y0 must be an integer"),
    ("localization.txt", 1, f"{V0},150,40,149,119", "localization.txt", 1, "x1 < x0"),
    ("localization.txt", 1, f"{V0},-3,40,149,119", "localization.txt", 1, "x0 must be >= 0"),
    # V0 is 300x200: the last pixel column is 299, the last row 199.
    ("localization.txt", 1, f"{V0},30,40,300,119", "localization.txt", 1, "which is 300x200"),
    ("localization.txt", 1, f"{V0},30,40,149,200", "localization.txt", 1, "y1 <= 199"),
    ("localization.txt", 2, f"{V1},m.png,", "localization.txt", 2, "expected 5 comma-separated"),
    ("localization.txt", 1, f"{V0},1,2,3", "localization.txt", 1, "5 comma-separated fields"),
    ("localization.txt", 1, None, "image_ids.txt", 1, "has no line in"),
]


@pytest.mark.parametrize(("file", "line", "text", "named", "named_line", "words"), BAD_METADATA)
def test_malformed_metadata_names_file_and_line(boxes_root, file, line, text, named, named_line,
                                                words):  # fmt: skip
    val = boxes_root / "metadata" / "CUB" / "val"
    edit(val / file, line, text)
    with pytest.raises(CamlabError) as err:
        box_module(boxes_root).dataset("val")
    msg = str(err.value)
    assert f"{val / named}, line {named_line}:" in msg and words in msg, msg


def test_mask_ignore_path_on_a_later_line_is_an_error(masks_root):
    loc = masks_root / "metadata" / "OpenImages" / "val" / "localization.txt"
    lines = loc.read_text().splitlines()
    assert lines[2].endswith("b_m1.png,")
    edit(loc, 3, lines[2] + "val/1.green/b_ignore.png")
    with pytest.raises(CamlabError, match=f"{loc}, line 3: .*first line only"):
        mask_module(masks_root).dataset("val")


def test_class_names_file_and_num_classes(boxes_root):
    write_lines(boxes_root / "metadata" / "CUB" / "class_names.txt", ["red", "green", "blue", "x"])
    dm = box_module(boxes_root)
    assert dm.class_names == ["red", "green", "blue", "x"] and dm.num_classes == 4
    with pytest.raises(CamlabError, match="data.num_classes=3, but .*class_names.txt names 4"):
        box_module(boxes_root, num_classes=3).class_names  # noqa: B018
    (boxes_root / "metadata" / "CUB" / "class_names.txt").unlink()
    with pytest.raises(CamlabError, match="label 2 of .* out of range: expected 0 .. 1"):
        box_module(boxes_root, num_classes=2).dataset("val")


# ValLocalization logs box metrics for box data sets and PxAP only for mask-only ones.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "make", "logged"),
    [
        ("cub", make_box_dataset, "val/max_box_acc_v2"),
        ("openimages", make_mask_dataset, "val/pxap"),
    ],
)
def test_train_py_fast_dev_run_on_the_generated_data(tmp_path, data, make, logged):
    from hydra import compose, initialize_config_dir

    from camlab.train import train

    make(tmp_path)
    overrides = [
        f"data={data}", f"paths.data_dir={tmp_path}", "debug=fast_dev_run", "model=resnet18",
        "model.pretrained=false", "data.batch_size=3", "data.num_workers=0",
        f"paths.output_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        train(compose("train", overrides=overrides))  # what train.py runs
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics[logged] <= 100, metrics


def test_openimages_with_an_empty_image_sizes_file_as_distributed(masks_root):
    # The reference's OpenImages metadata ships image_sizes.txt empty: masks need no sizes.
    for split in ("val", "test"):
        (masks_root / "metadata" / "OpenImages" / split / "image_sizes.txt").write_text("")
    item = mask_module(masks_root).dataset("val")[1]
    assert item["mask"].shape == (224, 224) and int((item["mask"] == 1).sum()) > 0

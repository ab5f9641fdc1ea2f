"""The metadata reader on lines cut from the real wsolevaluation metadata (fixtures/, MIT)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from camlab.data.wsol_metadata import read_split
from camlab.errors import CamlabError

REAL = Path(__file__).parent / "fixtures" / "wsol_metadata"


def test_cub_val_boxes_and_sizes():
    meta = read_split(str(REAL / "CUB" / "val"))
    assert len(meta.image_ids) == 9 and meta.labels.tolist() == [0, 0, 0, 1, 1, 4, 4, 4, 4]
    assert meta.sizes[0].tolist() == [560, 419]
    assert meta.boxes[0].tolist() == [[176, 136, 459, 291]]
    # 294x485 with a box to the last column and row (293, 484): in bounds, inclusive pixels.
    assert meta.sizes[7].tolist() == [294, 485] and meta.boxes[7].tolist() == [[0, 3, 293, 484]]
    assert meta.mask_paths is None


def test_ilsvrc_test_several_boxes_an_image():
    meta = read_split(str(REAL / "ILSVRC" / "test"))
    assert [len(b) for b in meta.boxes] == [1, 2, 4, 1, 1, 3, 1]
    assert meta.labels.tolist() == [65, 970, 415, 674, 332, 777, 369]
    assert meta.boxes[2][3].tolist() == [163, 219, 355, 374]
    assert meta.sizes[2].tolist() == [500, 375]
    assert meta.boxes[6].tolist() == [[12, 0, 119, 89]] and meta.sizes[6].tolist() == [120, 90]


def test_openimages_val_empty_image_sizes_as_distributed():
    directory = REAL / "OpenImages" / "val"
    assert (directory / "image_sizes.txt").read_text() == ""
    meta = read_split(str(directory))
    assert meta.sizes is None and meta.boxes is None
    assert [len(m) for m in meta.mask_paths] == [1, 2, 3, 1, 1]
    assert meta.ignore_paths[1] == "val/01226z/3dda685b28b1c1d8_ignore.png"
    assert meta.mask_paths[2][2] == "val/0138tl/e097cbe66c643d2a_m0138tl_727df202.png"


@pytest.mark.parametrize(
    ("x1", "y1", "ok"), [(293, 484, True), (294, 484, False), (293, 485, False)]
)
def test_real_box_one_pixel_past_the_image_is_refused(tmp_path, x1, y1, ok):
    split = tmp_path / "val"
    shutil.copytree(REAL / "CUB" / "val", split)
    loc = split / "localization.txt"
    lines = loc.read_text().splitlines()
    assert lines[7] == "005.Crested_Auklet/7982724776.jpg,0,3,293,484"
    lines[7] = f"005.Crested_Auklet/7982724776.jpg,0,3,{x1},{y1}"
    loc.write_text("\n".join(lines) + "\n")
    if ok:
        assert read_split(str(split)).boxes[7].tolist() == [[0, 3, x1, y1]]
        return
    with pytest.raises(CamlabError) as err:
        read_split(str(split))
    msg = str(err.value)
    assert f"{loc}, line 8:" in msg and "which is 294x485 pixels" in msg, msg
    assert "x1 <= 293 and y1 <= 484" in msg


def test_empty_image_sizes_with_boxes_is_an_error(tmp_path):
    split = tmp_path / "val"
    shutil.copytree(REAL / "CUB" / "val", split)
    (split / "image_sizes.txt").write_text("")
    with pytest.raises(CamlabError, match="has boxes, but .*image_sizes.txt is missing or empty"):
        read_split(str(split))


def test_partial_image_sizes_is_still_an_error(tmp_path):
    split = tmp_path / "val"
    shutil.copytree(REAL / "OpenImages" / "val", split)
    (split / "image_sizes.txt").write_text("val/01226z/32fdab44f6e415f1.jpg,640,480\n")
    with pytest.raises(CamlabError, match="image_ids.txt, line 2: .*has no line in .*image_sizes"):
        read_split(str(split))
    assert np.array_equal(read_split(str(REAL / "OpenImages" / "val")).labels, [0, 0, 1, 2, 3])

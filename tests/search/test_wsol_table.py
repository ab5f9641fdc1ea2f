"""The results table from search records: cells, mean +- std over seeds, the published values
beside them, baseline rows counted once per seed, and refused records."""

import csv
import json
import statistics

import pytest

from camlab.errors import CamlabError
from camlab.search import published, table


def record(method, data="cub", backbone="vgg16", seed=0, value=50.0, metric="val/max_box_acc_v2",
           center=None, fullsup=None, arch="reference"):  # fmt: skip
    key = table.METRICS[metric]
    test = {"cam": {key: value, "other": 1.0}}
    if center is not None:
        test["center"] = {key: center}
    if fullsup is not None:
        test["fullsup"] = {key: fullsup}
    return {
        "method": method, "data": data, "backbone": backbone, "arch": arch, "seed": seed,
        "metric": metric, "budget": 30, "finished": 30, "failed": 2,
        "selected": {"number": 7, "value": 61.0, "params": {"model.optimizer.lr": "0.01"},
                     "test": test},
    }  # fmt: skip


def write(tmp_path, records):
    for i, rec in enumerate(records):
        folder = tmp_path / f"search_{i}"
        folder.mkdir()
        (folder / "search.json").write_text(json.dumps(rec))
    return tmp_path


def test_published_values_are_cam_plus_the_tables_differences():
    assert published.published("cam", "cub", "vgg16") == 63.7
    assert published.published("acol", "cub", "vgg16") == 57.4  # 63.7 - 6.3
    assert published.published("acol", "cub", "resnet50") == 66.5  # 63.0 + 3.5
    assert published.published("adl", "openimages", "inception_v3") == 56.8  # 63.2 - 6.4
    assert published.published("has", "imagenet", "vgg16") == 60.6  # the "Best WSOL" row's
    assert published.published("fullsup", "cub", "inception_v3") == 86.6
    assert published.published("center", "openimages", "resnet50") == 45.8
    assert published.published("cam", "shapes", "resnet18") is None
    # The table's own means agree with its rows (CUB: 61.1 = mean of 63.7, 56.7, 63.0).
    cub = [published.published("cam", "cub", b) for b in published.BACKBONES]
    assert round(statistics.fmean(cub), 1) == 61.1


def test_cells_are_means_over_seeds_with_published_values(tmp_path):
    records = [
        record("cam", seed=0, value=60.0, center=59.0, fullsup=70.0),
        record("cam", seed=1, value=62.0, center=59.0, fullsup=72.0),
        record("acol", seed=0, value=55.0, center=59.0, fullsup=70.0),  # baselines: seed 0 again
        record("cam", data="shapes", backbone="resnet18", arch="torchvision", value=40.0),
        record("spg", data="openimages", metric="val/pxap", value=57.0),
    ]
    paths = table.find_records([write(tmp_path, records)])
    t = table.build_table([table.read_search(p) for p in paths])
    assert t.columns == [("cub", "vgg16", "reference"), ("openimages", "vgg16", "reference"),
                         ("shapes", "resnet18", "torchvision")]  # fmt: skip
    assert t.rows == ["cam", "acol", "spg", "fullsup", "center"]
    cub = ("cub", "vgg16", "reference")
    cam = t.cells["cam", cub]
    assert cam.values == [60.0, 62.0] and cam.mean == 61.0
    assert cam.std == pytest.approx(2**0.5)  # sample std over the two seeds
    assert cam.text() == "61.0 ± 1.4 (n=2) [63.7]"
    assert t.cells["acol", cub].text() == "55.0 [57.4]"
    assert t.cells["fullsup", cub].values == [70.0, 72.0]  # one value per seed, not per search
    assert t.cells["center", cub].values == [59.0, 59.0]
    assert t.cells["spg", ("openimages", "vgg16", "reference")].text() == "57.0 [58.3]"
    assert t.cells["cam", ("shapes", "resnet18", "torchvision")].text() == "40.0"
    assert t.cells["acol", ("shapes", "resnet18", "torchvision")].text() == "—"
    md = t.markdown()
    assert "| cub vgg16, MaxBoxAccV2 | openimages vgg16, PxAP | shapes resnet18 (torchvision)" in md
    assert "| CAM | 61.0 ± 1.4 (n=2) [63.7] | — [58.3] | 40.0 |" in md

    out = tmp_path / "out"
    paths = table.write(t, out)
    with open(paths["csv"]) as f:
        rows = {(r["row"], r["data"]): r for r in csv.DictReader(f)}
    assert rows["cam", "cub"]["values"] == "60;62" and rows["cam", "cub"]["published"] == "63.7"
    assert float(rows["cam", "cub"]["std"]) == pytest.approx(2**0.5, rel=1e-5)
    assert paths["png"].stat().st_size > 5000


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "gradcam"}, "is not one of cam, has"),
        ({"metric": "val/acc"}, "is not one of val/max_box_acc_v2"),
        ({"seed": "0"}, "`seed` is '0', not a int"),
        ({"selected": {"number": 1, "params": {}, "test": {"cam": {"max_box_acc_v2": "61"}}}},
         "not a finite number"),
        ({"selected": {"number": 1, "params": {},
                       "test": {"cam": {"max_box_acc_v2": float("nan")}}}}, "not a finite number"),
        ({"selected": {"number": 1, "params": {}, "test": {"gradcam": {}}}}, "no `cam` entry"),
    ],
)  # fmt: skip
def test_malformed_records_are_refused_naming_the_file(tmp_path, change, message):
    path = tmp_path / "search.json"
    path.write_text(json.dumps({**record("cam"), **change}))
    with pytest.raises(CamlabError, match=message) as err:
        table.read_search(path)
    assert str(path) in str(err.value)


def test_two_searches_for_one_cell_and_seed_are_refused(tmp_path):
    paths = table.find_records([write(tmp_path, [record("cam"), record("cam", value=1.0)])])
    with pytest.raises(CamlabError, match="Two searches for cam on cub vgg16 with seed 0"):
        table.build_table([table.read_search(p) for p in paths])


def test_no_records_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        table.main([str(tmp_path)])
    assert "No search.json under" in capsys.readouterr().err

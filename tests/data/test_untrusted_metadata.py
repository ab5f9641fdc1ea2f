"""Metadata and checkpoints from elsewhere: paths that leave the data root, bytes that are not
UTF-8, and a few hundred mutated lines and checkpoint dicts give a CamlabError or a valid result,
never another exception, and touch no file outside a temporary folder."""

import os
import random
from pathlib import Path

import pytest
import torch
from wsol_fake import make_box_dataset, make_mask_dataset

from camlab.checkpoint_io import read_checkpoint
from camlab.classifier import GAPClassifier
from camlab.data.wsol_metadata import SplitMetadata, read_split
from camlab.errors import CamlabError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def split(tmp_path) -> Path:
    return make_box_dataset(tmp_path)["val"]


def replace_line(path: Path, lineno: int, raw: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = raw
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    ("image_id", "words"),
    [
        ("../../../etc/passwd", "climbs out of the data root"),
        ("0.red/../../outside.png", "climbs out of the data root"),
        ("..", "climbs out of the data root"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\Windows\\win.ini", "is an absolute path"),
        ("\\\\server\\share\\x.png", "is an absolute path"),
    ],
)
def test_image_paths_outside_the_data_root_are_refused(split, image_id, words):
    ids = split / "image_ids.txt"
    replace_line(ids, 2, image_id.encode())
    with pytest.raises(CamlabError, match=rf"{ids}, line 2: image path .* {words}"):
        read_split(str(split))


def test_paths_that_stay_inside_are_accepted(split):
    first = (split / "image_ids.txt").read_text().splitlines()[0]
    # "a/../<id>" stays inside the root (and names the same file): allowed, listed as written.
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        path = split / name
        path.write_text(path.read_text().replace(first, f"0.red/../{first}"))
    assert read_split(str(split)).image_ids[0] == f"0.red/../{first}"


def test_mask_paths_outside_the_mask_root_are_refused(tmp_path):
    split = make_mask_dataset(tmp_path)["val"]
    loc = split / "localization.txt"
    lines = loc.read_text().splitlines()
    image = lines[0].split(",")[0]
    cases = [
        (f"{image},../../x.png,", "mask path '../../x.png' climbs out"),
        (f"{image},/tmp/x.png,", "mask path '/tmp/x.png' is an absolute"),
        (f"{image},m.png,/etc/shadow", "ignore path '/etc/shadow' is an absolute"),
    ]
    for line, words in cases:
        loc.write_text("\n".join([line, *lines[1:]]) + "\n")
        with pytest.raises(CamlabError, match=rf"{loc}, line 1: {words}"):
            read_split(str(split))


@pytest.mark.parametrize("name", ["image_ids.txt", "class_labels.txt", "image_sizes.txt",
                                  "localization.txt"])  # fmt: skip
def test_bytes_that_are_not_utf8_name_file_and_line(split, name):
    path = split / name
    replace_line(path, 3, b"0.red/caf\xe9.png,0")  # Latin-1, as an old editor saves it
    words = r"bytes that are not UTF-8 text \(b'\\xe9.pn' at column 10\); save the file as UTF-8"
    with pytest.raises(CamlabError, match=rf"{path}, line 3: {words}"):
        read_split(str(split))


def test_class_names_file_that_is_not_utf8(tmp_path):
    make_box_dataset(tmp_path)
    from camlab.data.wsol import WSOLDataModule

    names = tmp_path / "metadata" / "CUB" / "class_names.txt"
    names.write_bytes(b"red\ngr\xfcn\nblue\n")
    dm = WSOLDataModule(str(tmp_path / "dataset" / "CUB"), str(tmp_path / "metadata" / "CUB"))
    with pytest.raises(CamlabError, match=rf"{names}, line 2: bytes that are not UTF-8"):
        _ = dm.class_names


# -- fuzz: mutated metadata lines ------------------------------------------------------------

PIECES = ["..", "/", "\\", ",", ",,", "-1", "0", "99999999999999999999999", "1e9", "nan", " ",
          "\x00", "\t", "é", "\ud800", "C:", "../x", "/etc/passwd", "%s", "${oc.env:HOME}", "",
          "０", "1_0", "+3", "0x10"]  # fmt: skip


def mutate(line: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # random bytes somewhere
        at = rng.randrange(len(line) + 1)
        return line[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))) + line[at:]
    if kind == 1:  # a field replaced by a troublesome piece
        fields = line.split(b",")
        piece = rng.choice(PIECES).encode("utf-8", "surrogatepass")
        fields[rng.randrange(len(fields))] = piece
        return b",".join(fields)
    if kind == 2:  # truncated
        return line[: rng.randrange(len(line) + 1)]
    if kind == 3:  # a field dropped or duplicated
        fields = line.split(b",")
        if rng.random() < 0.5 and len(fields) > 1:
            fields.pop(rng.randrange(len(fields)))
        else:
            fields.insert(rng.randrange(len(fields) + 1), rng.choice(fields))
        return b",".join(fields)
    if kind == 4:  # a huge number
        return line + b"," + str(10 ** rng.randrange(5, 40)).encode()
    return line.replace(b"0", b"-") if rng.random() < 0.5 else line.upper()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for dirpath, _, files in os.walk(folder):
        if "__pycache__" in dirpath or "/.git" in dirpath:
            continue
        for name in files:
            path = os.path.join(dirpath, name)
            stat = os.stat(path)
            found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def check_valid(meta: SplitMetadata) -> None:
    n = len(meta.image_ids)
    assert n > 0 and meta.labels.shape == (n,) and (meta.labels >= 0).all()
    for image_id in meta.image_ids:
        assert not os.path.isabs(image_id) and not os.path.normpath(image_id).startswith("..")
    if meta.boxes is not None:
        assert len(meta.boxes) == n and meta.sizes is not None
        for boxes, (w, h) in zip(meta.boxes, meta.sizes, strict=True):
            assert (boxes[:, 2] < w).all() and (boxes[:, 3] < h).all()
            assert (boxes[:, :2] <= boxes[:, 2:]).all() and (boxes >= 0).all()


@pytest.mark.parametrize("kind", ["boxes", "masks"])
def test_fuzzed_metadata_gives_camlab_errors_or_valid_metadata(tmp_path, kind):
    root = tmp_path / "data"
    make = make_box_dataset if kind == "boxes" else make_mask_dataset
    split = make(root)["val"]
    pristine = {p.name: p.read_bytes() for p in split.iterdir()}
    rng = random.Random(0)
    project = snapshot(ROOT)
    outcomes = {"error": 0, "valid": 0}
    for _ in range(200):
        name = rng.choice(sorted(pristine))
        lines = pristine[name].split(b"\n")
        k = rng.randrange(len(lines))
        lines[k] = mutate(lines[k], rng)
        for other, data in pristine.items():
            (split / other).write_bytes(data)
        (split / name).write_bytes(b"\n".join(lines))
        try:
            meta = read_split(str(split))
        except CamlabError as err:
            assert str(split) in str(err) or "line" in str(err), err
            outcomes["error"] += 1
            continue
        check_valid(meta)
        outcomes["valid"] += 1
    assert outcomes["error"] > 50 and outcomes["valid"] > 5, outcomes
    assert snapshot(ROOT) == project
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# -- fuzz: mutated checkpoint dicts ------------------------------------------------------------

VALUES = [None, True, -1, 0, 10**12, 2**63, 1e308, float("nan"), "", "resnet18", "../../x",
          "os.system", [], [1.0], {"a": 1}, {"_target_": "os.system"}, torch.zeros(2),
          ("squeezenet1_1",), [[[[[[[[1]]]]]]]]]  # fmt: skip


BENIGN = [
    ("label_smoothing", 0.1), ("backbone_lr_mult", 1.0), ("pretrained", True), ("image_size", None),
    ("class_names", None), ("mean", [0.5]), ("init_from_checkpoint", False),
]  # fmt: skip


def test_fuzzed_checkpoints_give_camlab_errors_or_a_working_model(tmp_path):
    model = GAPClassifier("squeezenet1_1", num_classes=3, in_channels=1, image_size=32)
    good = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "epoch": 0, "global_step": 1}  # fmt: skip
    rng = random.Random(1)
    path = tmp_path / "f.ckpt"
    project = snapshot(ROOT)
    outcomes = {"error": 0, "valid": 0}
    for trial in range(150):
        ckpt = {
            "state_dict": dict(good["state_dict"]),
            "hyper_parameters": dict(good["hyper_parameters"]),
        }
        for _ in range(rng.randrange(1, 3)):
            where = rng.random()
            if not all(isinstance(ckpt[k], dict) for k in ("state_dict", "hyper_parameters")):
                break  # a top-level entry is already of another type
            if where < 0.2:  # another valid value (pretrained: the weights are in the file)
                key, value = rng.choice(BENIGN)
                ckpt["hyper_parameters"][key] = value
            elif where < 0.6:  # a hyper-parameter of another value or type, or a new one
                keys = [*ckpt["hyper_parameters"], "_instantiator", "extra"]
                ckpt["hyper_parameters"][rng.choice(keys)] = rng.choice(VALUES)
            elif where < 0.8:  # a weight dropped, renamed or reshaped
                key = rng.choice(sorted(ckpt["state_dict"]))
                value = ckpt["state_dict"].pop(key)
                if rng.random() < 0.5:
                    ckpt["state_dict"][key + rng.choice(["", "x"])] = value.reshape(-1)[:1]
            else:  # a top-level entry of another type
                ckpt[rng.choice(["state_dict", "hyper_parameters"])] = rng.choice(VALUES)
        if trial % 10 == 0:  # raw bytes too
            data = bytearray(open(path, "rb").read()) if path.exists() else bytearray(b"x")
            for _ in range(5):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
        else:
            torch.save(ckpt, path)
        try:
            loaded = GAPClassifier.load_from_checkpoint(str(path))
        except CamlabError:
            outcomes["error"] += 1
            continue
        with torch.no_grad():
            logits = loaded(torch.zeros(1, loaded.hparams.in_channels, 32, 32))
        assert logits.shape == (1, loaded.hparams.num_classes)
        outcomes["valid"] += 1
    assert outcomes["error"] > 50 and outcomes["valid"] > 5, outcomes
    assert snapshot(ROOT) == project
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ckpt"]


def test_readers_refuse_checkpoint_dicts_of_other_shapes(tmp_path):
    path = tmp_path / "x.ckpt"
    for value in [{"state_dict": {}, "hyper_parameters": []},
                  {"state_dict": [], "hyper_parameters": {}},
                  {"state_dict": {"w": "text"}, "hyper_parameters": {}}]:  # fmt: skip
        torch.save(value, path)
        read_checkpoint(str(path))  # the envelope is fine; rebuilding the model is not
        with pytest.raises(CamlabError):
            GAPClassifier.load_from_checkpoint(str(path))

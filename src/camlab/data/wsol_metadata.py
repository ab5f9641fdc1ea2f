"""One split of the wsolevaluation metadata (Choe et al., CVPR 2020), read and checked.

``<metadata_root>/<split>/`` holds

- ``image_ids.txt``: one image path (relative to the data root) a line;
- ``class_labels.txt``: ``path,label``;
- ``image_sizes.txt``: ``path,width,height`` (needed to rescale boxes);
- ``localization.txt`` (optional): ``path,x0,y0,x1,y1`` in original pixels, inclusive, one line a
  box; or, for mask data sets, ``path,mask_path,ignore_path``, one line an instance mask, the
  ignore path on the image's first line only.

Lines for images that ``image_ids.txt`` does not list are skipped (a subset of a split can keep
the full files); every listed image needs a label, a size (with boxes) and a localization line.
Each error names the file and line and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from camlab.errors import CamlabError

BOX_FIELDS = ("path", "x0", "y0", "x1", "y1")
MASK_FIELDS = ("path", "mask_path", "ignore_path")
MAX_INT = 2**31 - 1  # labels, sizes and coordinates: far beyond any image or class count


@dataclass
class SplitMetadata:
    """One split's metadata, in ``image_ids.txt`` order (N images).

    Attributes:
        directory: the split's metadata folder.
        image_ids: the N relative image paths.
        labels: int64 ``[N]`` class labels.
        label_lines: int64 ``[N]`` line of each label in ``class_labels.txt`` (for errors).
        sizes: int64 ``[N, 2]`` (width, height), or None without ``image_sizes.txt``.
        boxes: N int64 arrays ``[K_i, 4]`` (x0, y0, x1, y1) in original pixels, or None.
        mask_paths: N lists of instance mask paths, or None.
        ignore_paths: N ignore mask paths (``""``: none), or None.
    """

    directory: str
    image_ids: list[str]
    labels: np.ndarray
    label_lines: np.ndarray
    sizes: np.ndarray | None = None
    boxes: list[np.ndarray] | None = None
    mask_paths: list[list[str]] | None = None
    ignore_paths: list[str] | None = field(default=None)

    def file(self, name: str) -> str:
        return os.path.join(self.directory, name)


def _error(path: str, lineno: int, what: str) -> CamlabError:
    return CamlabError(f"{path}, line {lineno}: {what}.")


def read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of each line of a UTF-8 text file; bytes that are not UTF-8
    fail with the file and line."""
    with open(path, "rb") as f:
        raw = f.read()
    lines = []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _error(
                path, lineno,
                f"bytes that are not UTF-8 text ({line[err.start : err.start + 4]!r} at column "
                f"{err.start + 1}); save the file as UTF-8",
            ) from None  # fmt: skip
        if "\x00" in text:
            raise _error(path, lineno, "a NUL character; expected plain text")
        lines.append((lineno, text.strip()))
    return lines


def check_relative_path(path: str, lineno: int, value: str, what: str) -> str:
    """``value`` if it is a relative path that stays inside the folder it is relative to;
    absolute paths and ``..`` that climbs out fail with the file and line."""
    normal = os.path.normpath(value.replace("\\", "/"))
    drive = len(value) > 1 and value[1] == ":"  # C:\\... on Windows
    if os.path.isabs(value) or value.startswith(("/", "\\")) or drive:
        raise _error(
            path, lineno,
            f"{what} '{value}' is an absolute path; expected a path relative to the data root "
            "(the data set's own files only)",
        )  # fmt: skip
    if normal == ".." or normal.startswith("../"):
        raise _error(
            path, lineno,
            f"{what} '{value}' climbs out of the data root with '..'; expected a path inside it",
        )  # fmt: skip
    return value


def _records(path: str, names: tuple[str, ...] | None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line; ``names`` fixes the number of fields."""
    if not os.path.isfile(path):
        expected = f"one '{','.join(names)}' line an image" if names else "box or mask lines"
        raise CamlabError(f"{path} does not exist; expected {expected}.")
    for lineno, text in read_lines(path):
        if not text:
            continue
        fields = [value.strip() for value in text.split(",")]
        if names is not None and len(fields) != len(names):
            raise _error(
                path, lineno,
                f"expected {len(names)} comma-separated fields ({','.join(names)}), got "
                f"{len(fields)}: '{text}'",
            )  # fmt: skip
        yield lineno, fields


def _int(path: str, lineno: int, name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _error(path, lineno, f"{name} must be an integer, got '{value}'") from None
    if number < minimum:
        raise _error(path, lineno, f"{name} must be >= {minimum}, got {number}")
    if number > MAX_INT:
        raise _error(path, lineno, f"{name} must be at most {MAX_INT}, got {value}")
    return number


def _check_all_present(meta: SplitMetadata, id_lines: list[int], found, path: str) -> None:
    """Fails on the first listed image that ``path`` has no line for."""
    missing = [i for i, ok in enumerate(found) if not ok]
    if missing:
        i = missing[0]
        more = f" ({len(missing) - 1} more images lack one too)" if len(missing) > 1 else ""
        raise _error(
            meta.file("image_ids.txt"), id_lines[i],
            f"image '{meta.image_ids[i]}' has no line in {path}{more}",
        )  # fmt: skip


def read_image_ids(directory: str) -> tuple[list[str], list[int]]:
    """The split's image paths and their line numbers in ``image_ids.txt``."""
    path = os.path.join(directory, "image_ids.txt")
    ids: list[str] = []
    lines: list[int] = []
    first: dict[str, int] = {}
    for lineno, image_id in read_lines(path):
        if not image_id:
            continue
        check_relative_path(path, lineno, image_id, "image path")
        if image_id in first:
            previous = first[image_id]
            raise _error(path, lineno, f"image '{image_id}' is listed twice (line {previous})")
        first[image_id] = lineno
        ids.append(image_id)
        lines.append(lineno)
    if not ids:
        raise CamlabError(f"{path} lists no images; expected one relative image path a line.")
    return ids, lines


def read_split(directory: str, localization: bool = True) -> SplitMetadata:
    """Reads and checks one split's files; ``localization=False`` skips sizes and boxes/masks.

    Args:
        directory: ``<metadata_root>/<split>``.
        localization: read ``image_sizes.txt`` and ``localization.txt`` when present.

    Returns:
        The split's metadata.
    """
    ids, id_lines = read_image_ids(directory)
    index = {image_id: i for i, image_id in enumerate(ids)}
    meta = SplitMetadata(directory, ids, np.zeros(0, np.int64), np.zeros(0, np.int64))

    path = meta.file("class_labels.txt")
    labels = np.full(len(ids), -1, np.int64)
    label_lines = np.zeros(len(ids), np.int64)
    for lineno, (image_id, value) in _records(path, ("path", "label")):
        label = _int(path, lineno, "label", value, 0)
        i = index.get(image_id)
        if i is None:
            continue
        if labels[i] >= 0 and labels[i] != label:
            raise _error(
                path, lineno,
                f"image '{image_id}' has label {label} here and {labels[i]} on line "
                f"{label_lines[i]}; expected one label an image",
            )  # fmt: skip
        labels[i], label_lines[i] = label, lineno
    _check_all_present(meta, id_lines, labels >= 0, path)
    meta.labels, meta.label_lines = labels, label_lines
    if not localization:
        return meta

    sizes_path = meta.file("image_sizes.txt")
    if os.path.isfile(sizes_path):
        sizes = np.zeros((len(ids), 2), np.int64)
        records = 0
        for lineno, (image_id, w, h) in _records(sizes_path, ("path", "width", "height")):
            records += 1
            i = index.get(image_id)
            if i is not None:
                sizes[i] = (
                    _int(sizes_path, lineno, "width", w, 1),
                    _int(sizes_path, lineno, "height", h, 1),
                )
        # The reference's OpenImages metadata ships an empty image_sizes.txt (masks need no
        # sizes): an empty file means "no sizes", a partial one is an error.
        if records:
            _check_all_present(meta, id_lines, sizes[:, 0] > 0, sizes_path)
            meta.sizes = sizes

    loc_path = meta.file("localization.txt")
    if os.path.isfile(loc_path):
        _read_localization(meta, loc_path, index, id_lines)
        if meta.boxes is not None and meta.sizes is None:
            raise CamlabError(
                f"{loc_path} has boxes, but {sizes_path} is missing or empty: the boxes are "
                "rescaled with each image's size. Add it, one 'path,width,height' line an image."
            )
    return meta


def _read_localization(
    meta: SplitMetadata, path: str, index: dict[str, int], id_lines: list[int]
) -> None:
    """Fills ``meta.boxes``, or ``meta.mask_paths`` and ``meta.ignore_paths``; the first line's
    number of fields (5 or 3) tells boxes from masks."""
    n = len(meta.image_ids)
    boxes: list[list[tuple[int, ...]]] = [[] for _ in range(n)]
    masks: list[list[str]] = [[] for _ in range(n)]
    ignores = [""] * n
    names: tuple[str, ...] | None = None
    for lineno, fields in _records(path, names):
        if names is None:
            names = {5: BOX_FIELDS, 3: MASK_FIELDS}.get(len(fields))
            if names is None:
                raise _error(
                    path, lineno,
                    f"expected 5 comma-separated fields ({','.join(BOX_FIELDS)}) for boxes or 3 "
                    f"({','.join(MASK_FIELDS)}) for masks, got {len(fields)}: '{','.join(fields)}'",
                )  # fmt: skip
        elif len(fields) != len(names):
            raise _error(
                path, lineno,
                f"expected {len(names)} comma-separated fields ({','.join(names)}), as on the "
                f"file's first line, got {len(fields)}: '{','.join(fields)}'",
            )  # fmt: skip
        i = index.get(fields[0])
        if names == BOX_FIELDS:
            coords = zip(names[1:], fields[1:], strict=True)
            x0, y0, x1, y1 = (_int(path, lineno, k, v, 0) for k, v in coords)
            if x1 < x0 or y1 < y0:
                raise _error(
                    path, lineno,
                    f"box ({x0},{y0},{x1},{y1}) has x1 < x0 or y1 < y0; expected x0,y0,x1,y1 "
                    "with x0 <= x1 and y0 <= y1 (inclusive pixels)",
                )  # fmt: skip
            if i is None:
                continue
            if meta.sizes is not None:
                w, h = (int(v) for v in meta.sizes[i])
                if x1 >= w or y1 >= h:  # inclusive pixels: the last column is w - 1
                    raise _error(
                        path, lineno,
                        f"box ({x0},{y0},{x1},{y1}) of '{fields[0]}' lies outside the image, which "
                        f"is {w}x{h} pixels in {meta.file('image_sizes.txt')}; expected "
                        f"x1 <= {w - 1} and y1 <= {h - 1} (inclusive pixels). Fix the box or "
                        "the size",
                    )  # fmt: skip
            boxes[i].append((x0, y0, x1, y1))
            continue
        _, mask_path, ignore_path = fields
        if not mask_path:
            raise _error(path, lineno, "the mask path (second field) is empty")
        check_relative_path(path, lineno, mask_path, "mask path")
        if ignore_path:
            check_relative_path(path, lineno, ignore_path, "ignore path")
        if i is None:
            continue
        if masks[i] and ignore_path:
            raise _error(
                path, lineno,
                f"image '{fields[0]}' has an ignore path on a later line; expected it on the "
                "image's first line only and an empty third field here",
            )  # fmt: skip
        if not masks[i]:
            ignores[i] = ignore_path
        masks[i].append(mask_path)
    if names is None:
        raise CamlabError(f"{path} is empty; expected box or mask lines (or no such file).")
    if names == BOX_FIELDS:
        _check_all_present(meta, id_lines, [bool(b) for b in boxes], path)
        meta.boxes = [np.array(b, np.int64).reshape(-1, 4) for b in boxes]
    else:
        _check_all_present(meta, id_lines, [bool(m) for m in masks], path)
        meta.mask_paths, meta.ignore_paths = masks, ignores


def check_labels(meta: SplitMetadata, num_classes: int, source: str) -> None:
    """Fails on the first label outside ``0 .. num_classes - 1``; ``source`` says where the
    class count comes from."""
    bad = np.flatnonzero(meta.labels >= num_classes)
    if len(bad):
        i = bad[0]
        raise _error(
            meta.file("class_labels.txt"), int(meta.label_lines[i]),
            f"label {meta.labels[i]} of '{meta.image_ids[i]}' is out of range: expected 0 .. "
            f"{num_classes - 1} ({num_classes} classes, {source})",
        )  # fmt: skip

"""Per-level WSOL box scores from union-find sweeps over pixels sorted by value (numba).

Level v (1..255) stands for the foreground F_v = {s8 >= v} of the uint8 map s8 [H, W]; every
tau maps to one such level (see :func:`camlab.metrics.contours.level_masks`). What
``cv2.findContours(F_v, RETR_TREE, CHAIN_APPROX_SIMPLE)`` returns, checked against OpenCV on
random masks and on the test corpus:

- one outer contour per 8-connected component C of F_v, with C's bounding rectangle;
- one hole contour per 4-connected background component (a hole) not touching the image
  border, with the hole's bounding rectangle grown by one pixel on each side (the hole border
  runs through the foreground pixels 4-adjacent to the hole);
- contours in depth-first pre-order, top-level outer contours in reverse raster order of
  their first pixel (the component's raster-first pixel).

So V2 (every contour) is a descending 8-connected sweep over the foreground for the outer
boxes plus an ascending 4-connected sweep over the background for the holes.

v1 keeps the largest ``cv2.contourArea``. A hole's polygon never encloses more than its
parent's outer polygon, and a nested component's less, so the winner is always a top-level
outer contour, and ties go to the largest raster-first pixel (the first one OpenCV returns).
A top-level component filled with everything it encloses is an 8-connected component of
N_v = {pixels not 4-connected to the border through background below v}; with n the number of
N_v pixels in a 2x2 cell, twice its polygon area is the sum over its cells of 2 [n = 4] +
[n = 3]. A pixel enters N_v when v drops to key = (the level at which the ascending
background sweep connects it to the border) - 1, so v1 is a second descending sweep over key.
"""

from __future__ import annotations

import numba
import numpy as np

N_LEVELS = 257  # levels 0..255, plus 256 for "empty foreground"


@numba.njit(cache=True, nogil=True)
def _grouped_by_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of uint8 keys [N]: indices with key k are order[starts[k]:starts[k + 1]]."""
    starts = np.zeros(257, np.int64)
    for i in range(keys.size):
        starts[keys[i] + 1] += 1
    for k in range(256):
        starts[k + 1] += starts[k]
    fill = starts[:256].copy()
    order = np.empty(keys.size, np.int32)
    for i in range(keys.size):
        k = keys[i]
        order[fill[k]] = i
        fill[k] += 1
    return order, starts


@numba.njit(cache=True, nogil=True, inline="always")
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def _max_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """Max IoU of one inclusive box against gt [K, 4], the same int/int division as box_iou."""
    best = 0.0
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for k in range(gt.shape[0]):
        gx0, gy0, gx1, gy1 = gt[k, 0], gt[k, 1], gt[k, 2], gt[k, 3]
        iw = max(0, min(x1, gx1) - max(x0, gx0) + 1)
        ih = max(0, min(y1, gy1) - max(y0, gy0) + 1)
        inter = iw * ih
        union = area + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best:
            best = iou
    return best


@numba.njit(cache=True, nogil=True)
def _link(parent, size, box, a: int, b: int) -> int:
    """Union the sets of a and b (union by size), merging bounding boxes; returns the root."""
    if size[a] < size[b]:
        a, b = b, a
    parent[b] = a
    size[a] += size[b]
    box[a, 0] = min(box[a, 0], box[b, 0])
    box[a, 1] = min(box[a, 1], box[b, 1])
    box[a, 2] = max(box[a, 2], box[b, 2])
    box[a, 3] = max(box[a, 3], box[b, 3])
    return a


@numba.njit(cache=True, nogil=True)
def _new_set(parent, size, box, p: int, x: int, y: int) -> None:
    parent[p] = p
    size[p] = 1
    box[p, 0] = x
    box[p, 1] = y
    box[p, 2] = x
    box[p, 3] = y


@numba.njit(cache=True, nogil=True)
def outer_box_ious(s8: np.ndarray, gt: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Max IoU over the outer contours (8-connected components) of every needed level.

    Args:
        s8: uint8 array [H, W], C-contiguous.
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.

    Returns:
        float64 array [257]; -1 where not needed or F_v is empty.
    """
    h, w = s8.shape
    flat = s8.ravel()
    order, starts = _grouped_by_key(flat)
    n = flat.size
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    iou = np.empty(n, np.float64)
    dirty = np.zeros(n, np.bool_)
    active = np.empty(n, np.int32)
    n_active = 0
    out = np.full(N_LEVELS, -1.0)
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            p = order[j]
            y, x = p // w, p % w
            _new_set(parent, size, box, p, x, y)
            active[n_active] = p
            n_active += 1
            root = p
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= w or parent[yy * w + xx] < 0:
                        continue
                    other = _find(parent, yy * w + xx)
                    if other != root:
                        root = _link(parent, size, box, root, other)
            dirty[root] = True
        if need[v]:
            best, kept = -1.0, 0
            for i in range(n_active):
                r = active[i]
                if parent[r] != r:
                    continue  # merged away for good: drop it from the list
                active[kept] = r
                kept += 1
                if dirty[r]:
                    # The reference box end is x + w = xmax + 1, clipped at the last pixel.
                    x1, y1 = min(box[r, 2] + 1, w - 1), min(box[r, 3] + 1, h - 1)
                    iou[r] = _max_iou(box[r, 0], box[r, 1], x1, y1, gt)
                    dirty[r] = False
                best = max(best, iou[r])
            n_active = kept
            out[v] = best
    return out


@numba.njit(cache=True, nogil=True)
def background_sweep(
    s8: np.ndarray, gt: np.ndarray, need: np.ndarray, want_key: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Ascending 4-connected sweep over the background {s8 < v}, v = 1..256.

    Args:
        s8: uint8 array [H, W], C-contiguous.
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels whose hole IoU to report (none: no hole work).
        want_key: also return key (else an empty array).

    Returns:
        ``hole_iou`` float64 [257], max IoU over the hole contours of each needed level (-1 if
        none), and ``key`` uint8 [H * W]: the largest v at which the pixel is not yet 4-connected
        to the border through background (so pixel in N_v iff key >= v).
    """
    h, w = s8.shape
    flat = s8.ravel()
    order, starts = _grouped_by_key(flat)
    n = flat.size
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    outside = np.zeros(n, np.bool_)
    iou = np.empty(n, np.float64)
    dirty = np.zeros(n, np.bool_)
    active = np.empty(n, np.int32)
    n_active = 0
    # Member lists of the enclosed (not outside) sets, to stamp key when the border absorbs one.
    head = np.empty(n if want_key else 0, np.int32)
    tail = np.empty(n if want_key else 0, np.int32)
    nxt = np.empty(n if want_key else 0, np.int32)
    key = np.empty(n if want_key else 0, np.uint8)
    any_need = False
    for v in range(N_LEVELS):
        any_need |= need[v]
    hole_iou = np.full(N_LEVELS, -1.0)
    dys = (-1, 0, 0, 1)
    dxs = (0, -1, 1, 0)
    for u in range(256):
        # After adding value u the background is {s8 < v}: the state of level v = u + 1.
        v = u + 1
        for j in range(starts[u], starts[u + 1]):
            p = order[j]
            y, x = p // w, p % w
            _new_set(parent, size, box, p, x, y)
            out_p = y == 0 or x == 0 or y == h - 1 or x == w - 1
            outside[p] = out_p
            if want_key:
                if out_p:
                    key[p] = u
                else:
                    head[p], tail[p], nxt[p] = p, p, -1
            if not out_p and any_need:
                active[n_active] = p
                n_active += 1
            root = p
            new_head, new_tail = p, p
            for k in range(4):
                yy, xx = y + dys[k], x + dxs[k]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or parent[yy * w + xx] < 0:
                    continue
                other = _find(parent, yy * w + xx)
                if other == root:
                    continue
                o_root, o_other = outside[root], outside[other]
                if want_key:
                    if o_root != o_other:
                        # An enclosed set reaches the border: its pixels leave N at level v.
                        i = head[other] if o_root else head[root]
                        while i >= 0:
                            key[i] = u
                            i = nxt[i]
                    elif not o_root:
                        nxt[tail[root]] = head[other]
                        new_head, new_tail = head[root], tail[other]
                new_root = _link(parent, size, box, root, other)
                outside[new_root] = o_root or o_other
                if want_key and not (o_root or o_other):
                    head[new_root], tail[new_root] = new_head, new_tail
                root = new_root
            dirty[root] = True
        if v < N_LEVELS - 1 and need[v]:
            best, kept = -1.0, 0
            for i in range(n_active):
                r = active[i]
                if parent[r] != r or outside[r]:
                    continue  # merged away or reached the border: never a hole again
                active[kept] = r
                kept += 1
                if dirty[r]:
                    x0, y0 = box[r, 0] - 1, box[r, 1] - 1
                    x1, y1 = min(box[r, 2] + 2, w - 1), min(box[r, 3] + 2, h - 1)
                    iou[r] = _max_iou(x0, y0, x1, y1, gt)
                    dirty[r] = False
                best = max(best, iou[r])
            n_active = kept
            hole_iou[v] = best
    return hole_iou, key


@numba.njit(cache=True, nogil=True)
def largest_outer_ious(key: np.ndarray, h: int, w: int, gt: np.ndarray, need: np.ndarray):
    """IoU of the largest-area contour (the v1 box) of every needed level.

    Args:
        key: uint8 array [H * W] from :func:`background_sweep`.
        h, w: map size.
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.

    Returns:
        float64 array [257]; -1 where not needed or F_v is empty.
    """
    order, starts = _grouped_by_key(key)
    n = key.size
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    area2 = np.zeros(n, np.int64)  # twice cv2.contourArea of the set's outer contour
    first = np.empty(n, np.int32)  # raster-first pixel: OpenCV returns larger ones first
    cw = max(w - 1, 0)
    cells = np.zeros(max(h - 1, 0) * cw, np.uint8)  # N pixels per 2x2 cell
    active = np.empty(n, np.int32)
    n_active = 0
    out = np.full(N_LEVELS, -1.0)
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            p = order[j]
            y, x = p // w, p % w
            _new_set(parent, size, box, p, x, y)
            area2[p] = 0
            first[p] = p
            active[n_active] = p
            n_active += 1
            root = p
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= w or parent[yy * w + xx] < 0:
                        continue
                    other = _find(parent, yy * w + xx)
                    if other != root:
                        a2 = area2[root] + area2[other]
                        f = min(first[root], first[other])
                        root = _link(parent, size, box, root, other)
                        area2[root], first[root] = a2, f
            # Every N pixel of a cell touching p is 8-adjacent to p, so now in root's set.
            for cy in range(max(y - 1, 0), min(y, h - 2) + 1):
                for cx in range(max(x - 1, 0), min(x, w - 2) + 1):
                    c = cy * cw + cx
                    cells[c] += 1
                    if cells[c] >= 3:  # 3 of 4 corners: half a cell; 4: the other half
                        area2[root] += 1
        if need[v]:
            win, kept = -1, 0
            for i in range(n_active):
                r = active[i]
                if parent[r] != r:
                    continue
                active[kept] = r
                kept += 1
                if (
                    win < 0
                    or area2[r] > area2[win]
                    or (area2[r] == area2[win] and first[r] > first[win])
                ):
                    win = r
            n_active = kept
            if win >= 0:
                x1, y1 = min(box[win, 2] + 1, w - 1), min(box[win, 3] + 1, h - 1)
                out[v] = _max_iou(box[win, 0], box[win, 1], x1, y1, gt)
    return out


def level_ious(s8: np.ndarray, gt: np.ndarray, need: np.ndarray, multi_contour: bool) -> np.ndarray:
    """Image score (max IoU over kept contours and GT boxes) of every needed level.

    Args:
        s8: uint8 array [H, W].
        gt: integer array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report (v in 1..255).
        multi_contour: every contour (V2) or the largest-area one (v1).

    Returns:
        float64 array [257]; -1 where not needed or F_v is empty.
    """
    s8 = np.ascontiguousarray(s8, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    need = np.ascontiguousarray(need, dtype=np.bool_)
    if multi_contour:
        holes, _ = background_sweep(s8, gt, need, False)
        return np.maximum(outer_box_ious(s8, gt, need), holes)
    _, key = background_sweep(s8, gt, np.zeros_like(need), True)
    return largest_outer_ious(key, s8.shape[0], s8.shape[1], gt, need)

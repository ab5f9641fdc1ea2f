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

Each sweep reports only the levels asked for, and keeps the per-level maximum incrementally:
sets untouched since the last reported level keep their value, so only touched sets are
rescored unless the previous best set changed for the worse (then all live sets are rescanned).
"""

from __future__ import annotations

import numba
import numpy as np

from camlab.metrics.unionfind import (
    find,
    grouped_pixels,
    link,
    max_iou,
    new_set,
    padded,
    ring_groups,
    ring_offsets,
)

N_LEVELS = 257  # levels 0..255, plus 256 for "empty foreground"
_REPS, _N_REPS = ring_groups()


@numba.njit(cache=True, nogil=True)
def _best_iou(st, outside, grow, h, w, gt, holder, held):
    """Max IoU over the live sets of a sweep (see :func:`outer_box_ious`), incrementally.

    Args:
        st: tuple (parent, box, iou, touched, is_touched, active, in_active, counts), where
            counts = [n_touched, n_active]; updated in place.
        outside: bool [N]; sets flagged there are not contours (background touching the border).
        grow: 0 for outer boxes, 1 for hole boxes (the hole's box grown by one pixel).
        h, w: map size; gt: int64 [K, 4].
        holder, held: the set that gave the previous maximum (-1 if none) and that maximum.

    Returns:
        (maximum, the set holding it or -1); 0.0 when no live set overlaps a GT box.
    """
    parent, box, iou, touched, is_touched, active, in_active, counts = st
    holder_clean = (
        holder >= 0 and parent[holder] == holder and not outside[holder] and not is_touched[holder]
    )
    dmax, darg = -1.0, -1
    for i in range(counts[0]):
        r = touched[i]
        is_touched[r] = False
        if parent[r] != r or outside[r]:
            continue
        # The reference box end is x + w = xmax + 1, clipped at the last pixel.
        x0, y0 = box[r, 0] - grow, box[r, 1] - grow
        x1, y1 = min(box[r, 2] + 1 + grow, w - 1), min(box[r, 3] + 1 + grow, h - 1)
        val = max_iou(x0, y0, x1, y1, gt)
        iou[r] = val
        if val > 0.0 and not in_active[r]:
            in_active[r] = True
            active[counts[1]] = r
            counts[1] += 1
        if val > dmax:
            dmax, darg = val, r
    counts[0] = 0
    # Untouched live sets are unchanged, hence <= held.
    if darg >= 0 and dmax >= held:
        return dmax, darg
    if holder_clean:
        return held, holder
    best, arg, kept = 0.0, -1, 0
    for i in range(counts[1]):
        r = active[i]
        if parent[r] != r or outside[r] or iou[r] == 0.0:
            in_active[r] = False  # zero-IoU sets come back through `touched` when they change
            continue
        active[kept] = r
        kept += 1
        if iou[r] > best:
            best, arg = iou[r], r
    counts[1] = kept
    return best, arg


@numba.njit(cache=True, nogil=True)
def _touch(st, r: int) -> None:
    touched, is_touched, counts = st[3], st[4], st[7]
    if not is_touched[r]:
        is_touched[r] = True
        touched[counts[0]] = r
        counts[0] += 1


@numba.njit(cache=True, nogil=True)
def outer_box_ious(s8, gt, need, reps, n_reps) -> np.ndarray:
    """Max IoU over the outer contours (8-connected components) of every needed level.

    Args:
        s8: uint8 array [H, W].
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.
        reps, n_reps: :func:`camlab.metrics.unionfind.ring_groups`.

    Returns:
        float64 array [257]; -1 where not needed, 0.0 also where F_v is empty.
    """
    h, w = s8.shape
    wp = w + 2
    order, starts, ys, xs = grouped_pixels(padded(s8), h, w)
    n = (h + 2) * wp
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    st = (
        parent,
        box,
        np.zeros(n, np.float64),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.zeros(2, np.int64),
    )
    never_outside = np.zeros(n, np.bool_)
    ring = ring_offsets(w)
    out = np.full(N_LEVELS, -1.0)
    holder, held = -1, -1.0
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            q = order[j]
            new_set(parent, size, box, q, xs[j], ys[j])
            mask = 0
            for k in range(8):
                mask |= (parent[q + ring[k]] >= 0) << k
            root = q
            for g in range(n_reps[mask]):
                other = find(parent, q + ring[reps[mask, g]])
                if other != root:
                    root = link(parent, size, box, root, other)
            _touch(st, root)
        if need[v]:
            held, holder = _best_iou(st, never_outside, 0, h, w, gt, holder, held)
            out[v] = held
    return out


@numba.njit(cache=True, nogil=True)
def background_sweep(s8: np.ndarray, gt: np.ndarray, need: np.ndarray, want_key: bool):
    """Ascending 4-connected sweep over the background {s8 < v}, v = 1..256.

    The ring of the padded image is one set flagged outside, so a background set is a hole
    exactly while it is not joined to the ring.

    Args:
        s8: uint8 array [H, W].
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels whose hole IoU to report (none: no hole work).
        want_key: also return key (else an empty array).

    Returns:
        ``hole_iou`` float64 [257], max IoU over the hole contours of each needed level (0.0
        also when there is no hole, -1 where not needed), and ``key`` uint8 [(H + 2) * (W + 2)]
        (padded): the largest v at which the pixel is not yet 4-connected to the border through
        background (a pixel is in N_v iff key >= v).
    """
    h, w = s8.shape
    wp = w + 2
    order, starts, ys, xs = grouped_pixels(padded(s8), h, w)
    n = (h + 2) * wp
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.zeros((n, 4), np.int32)
    outside = np.zeros(n, np.bool_)
    st = (
        parent,
        box,
        np.zeros(n, np.float64),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.zeros(2, np.int64),
    )
    # The ring: one outside set rooted at index 0, big enough never to be linked under another.
    for y in range(h + 2):
        for x in (0, wp - 1):
            parent[y * wp + x] = 0
    for x in range(wp):
        parent[x] = 0
        parent[(h + 1) * wp + x] = 0
    size[0] = n
    outside[0] = True
    # Member lists of the enclosed sets, to stamp key when one reaches the ring.
    m = n if want_key else 0
    head, tail, nxt = np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m, np.int32)
    key = np.zeros(m, np.uint8)
    any_need = False
    for v in range(N_LEVELS):
        any_need |= need[v]
    offsets = np.array([-wp, -1, 1, wp])
    hole_iou = np.full(N_LEVELS, -1.0)
    holder, held = -1, -1.0
    for u in range(256):
        # After adding value u the background is {s8 < v}: the state of level v = u + 1.
        for j in range(starts[u], starts[u + 1]):
            q = order[j]
            new_set(parent, size, box, q, xs[j], ys[j])
            if want_key:
                head[q], tail[q], nxt[q] = q, q, -1
            root = q
            for k in range(4):
                nb = q + offsets[k]
                if parent[nb] < 0:
                    continue
                other = find(parent, nb)
                if other == root:
                    continue
                o_root, o_other = outside[root], outside[other]
                new_head, new_tail = head[root] if want_key else 0, 0
                if want_key:
                    if o_root != o_other:
                        # An enclosed set reaches the border: its pixels leave N at level u + 1.
                        i = head[other] if o_root else head[root]
                        while i >= 0:
                            key[i] = u
                            i = nxt[i]
                    elif not o_root:
                        nxt[tail[root]] = head[other]
                        new_tail = tail[other]
                root = link(parent, size, box, root, other)
                outside[root] = o_root or o_other
                if want_key and not outside[root]:
                    head[root], tail[root] = new_head, new_tail
            if any_need and not outside[root]:
                _touch(st, root)
        if u < 255 and need[u + 1]:
            held, holder = _best_iou(st, outside, 1, h, w, gt, holder, held)
            hole_iou[u + 1] = held
    return hole_iou, key


@numba.njit(cache=True, nogil=True)
def largest_outer_ious(key, h, w, gt, need, reps, n_reps):
    """IoU of the largest-area contour (the v1 box) of every needed level.

    Args:
        key: padded uint8 array [(H + 2) * (W + 2)] from :func:`background_sweep`.
        h, w: map size.
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.
        reps, n_reps: :func:`camlab.metrics.unionfind.ring_groups`.

    Returns:
        float64 array [257]; -1 where not needed or F_v is empty.
    """
    wp = w + 2
    order, starts, ys, xs = grouped_pixels(key, h, w)
    n = (h + 2) * wp
    parent = np.full(n, -1, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    area2 = np.zeros(n, np.int64)  # twice cv2.contourArea of the set's outer contour
    first = np.empty(n, np.int32)  # raster-first pixel: OpenCV returns larger ones first
    # N pixels per 2x2 cell, indexed by the cell's top-left pixel; cells reaching into the ring
    # never get past 2, so they never count.
    cells = np.zeros(n, np.uint8)
    touched = np.empty(n, np.int32)
    is_touched = np.zeros(n, np.bool_)
    n_touched = 0
    active = np.empty(n, np.int32)
    n_active = 0
    ring = ring_offsets(w)
    corners = np.array([0, -1, -wp, -wp - 1])
    out = np.full(N_LEVELS, -1.0)
    win, win_area, win_first = -1, -1, -1
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            q = order[j]
            new_set(parent, size, box, q, xs[j], ys[j])
            area2[q] = 0
            first[q] = q
            active[n_active] = q
            n_active += 1
            mask = 0
            for k in range(8):
                mask |= (parent[q + ring[k]] >= 0) << k
            root = q
            for g in range(n_reps[mask]):
                other = find(parent, q + ring[reps[mask, g]])
                if other != root:
                    a2 = area2[root] + area2[other]
                    f = min(first[root], first[other])
                    root = link(parent, size, box, root, other)
                    area2[root], first[root] = a2, f
            # Every N pixel of a cell around q is 8-adjacent to q, so now in root's set.
            for k in range(4):
                c = q + corners[k]
                cells[c] += 1
                if cells[c] >= 3:  # 3 of 4 corners: half a cell; 4: the other half
                    area2[root] += 1
            if not is_touched[root]:
                is_touched[root] = True
                touched[n_touched] = root
                n_touched += 1
        if not need[v]:
            continue
        win_clean = win >= 0 and parent[win] == win and not is_touched[win]
        best = -1
        for i in range(n_touched):
            r = touched[i]
            is_touched[r] = False
            if parent[r] == r and (
                best < 0
                or area2[r] > area2[best]
                or (area2[r] == area2[best] and first[r] > first[best])
            ):
                best = r
        n_touched = 0
        # Untouched live sets rank below the previous winner (and have a different first).
        below = best < 0 or (
            area2[best] < win_area or (area2[best] == win_area and first[best] < win_first)
        )
        if win_clean and below:
            best = win
        elif below:
            best, kept = -1, 0
            for i in range(n_active):
                r = active[i]
                if parent[r] != r:
                    continue
                active[kept] = r
                kept += 1
                if (
                    best < 0
                    or area2[r] > area2[best]
                    or (area2[r] == area2[best] and first[r] > first[best])
                ):
                    best = r
            n_active = kept
        win, win_area, win_first = best, area2[best], first[best]
        x1, y1 = min(box[win, 2] + 1, w - 1), min(box[win, 3] + 1, h - 1)
        out[v] = max_iou(box[win, 0], box[win, 1], x1, y1, gt)
    return out


def level_ious(s8: np.ndarray, gt: np.ndarray, need: np.ndarray, multi_contour: bool) -> np.ndarray:
    """Image score (max IoU over kept contours and GT boxes) of every needed level.

    Args:
        s8: uint8 array [H, W].
        gt: integer array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report, each a value present in s8 (v in 1..255).
        multi_contour: every contour (V2) or the largest-area one (v1).

    Returns:
        float64 array [257]; -1 where not needed.
    """
    s8 = np.ascontiguousarray(s8, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    need = np.ascontiguousarray(need, dtype=np.bool_)
    if multi_contour:
        holes, _ = background_sweep(s8, gt, need, False)
        return np.maximum(outer_box_ious(s8, gt, need, _REPS, _N_REPS), holes)
    _, key = background_sweep(s8, gt, np.zeros_like(need), True)
    return largest_outer_ious(key, s8.shape[0], s8.shape[1], gt, need, _REPS, _N_REPS)

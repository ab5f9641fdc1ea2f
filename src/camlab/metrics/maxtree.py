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
rescored unless the previous best set changed for the worse (then the live sets are rescanned).

Layout: maps are padded with a one-pixel ring, pixel (y, x) is q = (y + 1) * (W + 2) + x + 1,
so neighbours need no bounds checks. ``parent`` int32 [N] (-1: not added yet) and a flat node
table int32 [N * 8] (one 32-byte row per set root: SIZE, box X0 Y0 X1 Y1, FIRST raster pixel,
AREA2 twice the outer polygon area, FLAG touches the border); a flat table with constant
strides is about 1.5x faster than [N, 8] or separate arrays. All compiled code lives in this
one file because numba's cache only notices edits to the file a function is defined in.
"""

from __future__ import annotations

import numpy as np

from camlab.metrics.jit import numba

N_LEVELS = 257  # levels 0..255, plus 256 for "empty foreground"
SIZE, X0, Y0, X1, Y1, FIRST, AREA2, FLAG = range(8)
_JIT = {"cache": True, "nogil": True}
_INLINE = {"cache": True, "nogil": True, "inline": "always"}  # hot helpers: no call overhead


def ring_groups() -> tuple[np.ndarray, np.ndarray]:
    """For every 8-bit pattern of already-added 8-neighbours, one neighbour per group of them.

    Ring positions 0..7 are N, NE, E, SE, S, SW, W, NW (:func:`_ring_offsets`). Added
    neighbours that are 8-adjacent to each other are already in one set, so a sweep needs one
    find per group: ring neighbours are adjacent, and so are two edge neighbours around a
    corner.

    Returns:
        ``reps`` int64 [256, 4] (first ``counts[m]`` entries used) and ``counts`` int64 [256].
    """
    reps = np.zeros((256, 4), np.int64)
    counts = np.zeros(256, np.int64)
    for mask in range(256):
        on = [i for i in range(8) if mask >> i & 1]
        group = {i: i for i in on}
        for i in on:
            for j in on:
                step = (j - i) % 8
                if step == 1 or (step == 2 and i % 2 == 0):
                    old, new = group[j], group[i]
                    group = {k: new if g == old else g for k, g in group.items()}
        firsts = sorted({g: k for k, g in sorted(group.items(), reverse=True)}.values())
        counts[mask] = len(firsts)
        reps[mask, : len(firsts)] = firsts
    return reps, counts


_REPS, _N_REPS = ring_groups()


@numba.njit(**_JIT)
def _ring_offsets(w: int) -> np.ndarray:
    """Padded-index offsets of the 8 neighbours N, NE, E, SE, S, SW, W, NW."""
    wp = w + 2
    return np.array([-wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1, -wp - 1])


@numba.njit(**_JIT)
def _padded(s8: np.ndarray) -> np.ndarray:
    """uint8 map [H, W] -> flat padded copy [(H + 2) * (W + 2)] with a zero ring."""
    h, w = s8.shape
    out = np.zeros((h + 2) * (w + 2), np.uint8)
    for y in range(h):
        row = (y + 1) * (w + 2) + 1
        for x in range(w):
            out[row + x] = s8[y, x]
    return out


@numba.njit(**_JIT)
def _grouped_pixels(keys: np.ndarray, h: int, w: int):
    """Counting sort of the real pixels of a padded uint8 key map by key.

    Returns:
        ``order`` int32 [H * W] of padded indices, raster order within a key; ``starts`` int64
        [257] (key k is ``order[starts[k]:starts[k + 1]]``); ``ys``, ``xs`` int32 [H * W], the
        row and column of each entry of ``order`` (no division in the sweeps).
    """
    wp = w + 2
    starts = np.zeros(257, np.int64)
    for y in range(h):
        row = (y + 1) * wp + 1
        for x in range(w):
            starts[keys[row + x] + 1] += 1
    for k in range(256):
        starts[k + 1] += starts[k]
    fill = starts[:256].copy()
    order = np.empty(h * w, np.int32)
    ys = np.empty(h * w, np.int32)
    xs = np.empty(h * w, np.int32)
    for y in range(h):
        row = (y + 1) * wp + 1
        for x in range(w):
            k = keys[row + x]
            i = fill[k]
            order[i], ys[i], xs[i] = row + x, y, x
            fill[k] = i + 1
    return order, starts, ys, xs


@numba.njit(**_INLINE)
def _find(parent: np.ndarray, i: int) -> int:
    """Root of i's set, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(**_INLINE)
def _new_node(parent, node, q: int, x: int, y: int) -> None:
    """Make pixel q (column x, row y) a singleton set."""
    parent[q] = q
    o = q * 8
    node[o + SIZE] = 1
    node[o + X0] = x
    node[o + Y0] = y
    node[o + X1] = x
    node[o + Y1] = y
    node[o + FIRST] = q
    node[o + AREA2] = 0
    node[o + FLAG] = 0


@numba.njit(**_INLINE)
def _merge(parent, node, a: int, b: int) -> int:
    """Union of the sets rooted at a != b (by size; b on ties); returns the new root.

    On ties b stays the root, so a newly added pixel (a, size 1) never becomes the root of an
    existing set: every live root was once a pixel that started a new set.
    """
    if node[a * 8 + SIZE] <= node[b * 8 + SIZE]:
        a, b = b, a
    parent[b] = a
    oa, ob = a * 8, b * 8
    node[oa + SIZE] += node[ob + SIZE]
    node[oa + X0] = min(node[oa + X0], node[ob + X0])
    node[oa + Y0] = min(node[oa + Y0], node[ob + Y0])
    node[oa + X1] = max(node[oa + X1], node[ob + X1])
    node[oa + Y1] = max(node[oa + Y1], node[ob + Y1])
    node[oa + FIRST] = min(node[oa + FIRST], node[ob + FIRST])
    node[oa + AREA2] += node[ob + AREA2]
    node[oa + FLAG] |= node[ob + FLAG]
    return a


@numba.njit(**_INLINE)
def _attach(parent, node, q: int, x: int, y: int, root: int) -> None:
    """Add the new pixel q (column x, row y) to the set rooted at root."""
    parent[q] = root
    o = root * 8
    node[o + SIZE] += 1
    node[o + X0] = min(node[o + X0], x)
    node[o + Y0] = min(node[o + Y0], y)
    node[o + X1] = max(node[o + X1], x)
    node[o + Y1] = max(node[o + Y1], y)
    node[o + FIRST] = min(node[o + FIRST], q)


@numba.njit(**_INLINE)
def _insert8(parent, node, q: int, x: int, y: int, ring, reps, n_reps) -> tuple[int, bool]:
    """Add pixel q to the 8-connected sets of the pixels added before.

    Returns:
        (q's root, whether q started a new set).
    """
    mask = 0
    for k in range(8):
        mask |= (parent[q + ring[k]] >= 0) << k
    groups = n_reps[mask]
    if groups == 0:
        _new_node(parent, node, q, x, y)
        return q, True
    root = _find(parent, q + ring[reps[mask, 0]])
    _attach(parent, node, q, x, y, root)
    for g in range(1, groups):
        other = _find(parent, q + ring[reps[mask, g]])
        if other != root:
            root = _merge(parent, node, root, other)
    return root, False


@numba.njit(**_JIT)
def _ring_set(h: int, w: int):
    """parent and node of a background sweep whose padding ring is one set (root 0, FLAG)."""
    wp = w + 2
    n = (h + 2) * wp
    parent = np.full(n, -1, np.int32)
    for x in range(wp):
        parent[x] = 0
        parent[(h + 1) * wp + x] = 0
    for y in range(h + 2):
        parent[y * wp] = 0
        parent[y * wp + wp - 1] = 0
    node = np.zeros(n * 8, np.int32)
    node[SIZE] = n  # never linked under another set
    node[FLAG] = 1
    return parent, node


@numba.njit(**_JIT)
def max_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """Max IoU of one inclusive box against gt [K, 4], the same int / int division as box_iou."""
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


@numba.njit(**_JIT)
def _tracker(n: int):
    """State of :func:`_best_iou`: (iou, touched, is_touched, active, in_active, counts)."""
    return (
        np.zeros(n, np.float64),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.empty(n, np.int32),
        np.zeros(n, np.bool_),
        np.zeros(2, np.int64),  # number of touched, number of active
    )


@numba.njit(**_INLINE)
def _touch(tracker, r: int) -> None:
    """Note that the set rooted at r changed since the last reported level."""
    touched, is_touched, counts = tracker[1], tracker[2], tracker[5]
    if not is_touched[r]:
        is_touched[r] = True
        touched[counts[0]] = r
        counts[0] += 1


@numba.njit(**_JIT)
def _best_iou(parent, node, tracker, grow, h, w, gt, holder, held):
    """Max IoU over the live sets of a sweep, updated from the sets touched since last time.

    Untouched live sets keep their IoU, which was <= held, so the touched sets decide unless
    the set holding the old maximum changed for the worse; then the live sets with a positive
    IoU (kept in ``active``) are rescanned.

    Args:
        parent, node: the sweep's union-find (sets with FLAG are not contours).
        tracker: :func:`_tracker`, updated in place.
        grow: 0 for outer boxes, 1 for hole boxes (the hole's box grown by one pixel).
        h, w: map size; gt: int64 [K, 4].
        holder, held: the set that gave the previous maximum (-1 if none) and that maximum.

    Returns:
        (maximum, the set holding it or -1); 0.0 when no live set overlaps a GT box.
    """
    iou, touched, is_touched, active, in_active, counts = tracker
    holder_clean = (
        holder >= 0
        and parent[holder] == holder
        and node[holder * 8 + FLAG] == 0
        and not is_touched[holder]
    )
    dmax, darg = -1.0, -1
    for i in range(counts[0]):
        r = touched[i]
        is_touched[r] = False
        o = r * 8
        if parent[r] != r or node[o + FLAG] != 0:
            continue
        # The reference box end is x + w = xmax + 1, clipped at the last pixel.
        x0, y0 = node[o + X0] - grow, node[o + Y0] - grow
        x1, y1 = min(node[o + X1] + 1 + grow, w - 1), min(node[o + Y1] + 1 + grow, h - 1)
        val = max_iou(x0, y0, x1, y1, gt)
        iou[r] = val
        if val > 0.0 and not in_active[r]:
            in_active[r] = True
            active[counts[1]] = r
            counts[1] += 1
        if val > dmax:
            dmax, darg = val, r
    counts[0] = 0
    if darg >= 0 and dmax >= held:
        return dmax, darg
    if holder_clean:
        return held, holder
    best, arg, kept = 0.0, -1, 0
    for i in range(counts[1]):
        r = active[i]
        if parent[r] != r or node[r * 8 + FLAG] != 0 or iou[r] == 0.0:
            in_active[r] = False  # zero-IoU sets come back through `touched` when they change
            continue
        active[kept] = r
        kept += 1
        if iou[r] > best:
            best, arg = iou[r], r
    counts[1] = kept
    return best, arg


@numba.njit(**_JIT)
def outer_box_ious(s8, gt, need, reps, n_reps) -> np.ndarray:
    """Max IoU over the outer contours (8-connected components) of every needed level.

    Args:
        s8: uint8 array [H, W].
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.
        reps, n_reps: :func:`ring_groups`.

    Returns:
        float64 array [257]; -1 where not needed.
    """
    h, w = s8.shape
    order, starts, ys, xs = _grouped_pixels(_padded(s8), h, w)
    n = (h + 2) * (w + 2)
    parent = np.full(n, -1, np.int32)
    node = np.empty(n * 8, np.int32)
    tracker = _tracker(n)
    ring = _ring_offsets(w)
    out = np.full(N_LEVELS, -1.0)
    holder, held = -1, -1.0
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            root, _ = _insert8(parent, node, np.int64(order[j]), xs[j], ys[j], ring, reps, n_reps)
            _touch(tracker, root)
        if need[v]:
            held, holder = _best_iou(parent, node, tracker, 0, h, w, gt, holder, held)
            out[v] = held
    return out


@numba.njit(**_JIT)
def hole_box_ious(s8, gt, need) -> np.ndarray:
    """Max IoU over the hole contours of every needed level (ascending 4-connected sweep).

    After adding the pixels of value u the background is {s8 < u + 1}: level v = u + 1. A
    background set is a hole while it is not joined to the ring (FLAG).

    Args:
        s8: uint8 array [H, W].
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.

    Returns:
        float64 array [257]; -1 where not needed, 0.0 where no hole overlaps a GT box.
    """
    h, w = s8.shape
    wp = w + 2
    order, starts, ys, xs = _grouped_pixels(_padded(s8), h, w)
    parent, node = _ring_set(h, w)
    tracker = _tracker(parent.size)
    out = np.full(N_LEVELS, -1.0)
    holder, held = -1, -1.0
    for u in range(255):
        for j in range(starts[u], starts[u + 1]):
            q = np.int64(order[j])
            root = -1
            # Written out here: as an inlined helper this loop ran 1.5x slower.
            for nb in (q - wp, q - 1, q + 1, q + wp):
                if parent[nb] < 0:
                    continue
                other = _find(parent, nb)
                if root < 0:
                    root = other
                    _attach(parent, node, q, xs[j], ys[j], root)
                elif other != root:
                    root = _merge(parent, node, root, other)
            if root < 0:
                _new_node(parent, node, q, xs[j], ys[j])
                root = q
            if node[root * 8 + FLAG] == 0:
                _touch(tracker, root)
        if need[u + 1]:
            held, holder = _best_iou(parent, node, tracker, 1, h, w, gt, holder, held)
            out[u + 1] = held
    return out


@numba.njit(**_JIT)
def outside_levels(s8) -> np.ndarray:
    """Per pixel, the largest v at which it is not yet 4-connected to the border through
    background {s8 < v}: a pixel is in N_v (see the module doc) iff its key >= v.

    Args:
        s8: uint8 array [H, W].

    Returns:
        key, padded uint8 array [(H + 2) * (W + 2)] (ring entries 0).
    """
    h, w = s8.shape
    wp = w + 2
    order, starts, _, _ = _grouped_pixels(_padded(s8), h, w)
    parent, node = _ring_set(h, w)
    n = parent.size
    # Member lists of the enclosed sets (head, tail in node columns X0, Y0; links in nxt), to
    # stamp key on all of a set's pixels when it reaches the ring.
    nxt = np.empty(n, np.int32)
    key = np.zeros(n, np.uint8)
    for u in range(256):
        for j in range(starts[u], starts[u + 1]):
            q = np.int64(order[j])
            parent[q] = q
            o = q * 8
            node[o + SIZE], node[o + X0], node[o + Y0], node[o + FLAG] = 1, q, q, 0
            nxt[q] = -1
            root = q
            for nb in (q - wp, q - 1, q + 1, q + wp):
                if parent[nb] < 0:
                    continue
                other = _find(parent, nb)
                if other == root:
                    continue
                r, s = root * 8, other * 8
                out_root, out_other = node[r + FLAG], node[s + FLAG]
                if out_root != out_other:
                    # An enclosed set reaches the border: its pixels leave N at level u + 1.
                    i = node[s + X0] if out_root else node[r + X0]
                    while i >= 0:
                        key[i] = u
                        i = nxt[i]
                elif not out_root:
                    nxt[node[r + Y0]] = node[s + X0]
                    node[r + Y0] = node[s + Y0]
                if node[r + SIZE] < node[s + SIZE]:
                    node[s + X0], node[s + Y0] = node[r + X0], node[r + Y0]  # the joined list
                    root, other, r, s = other, root, s, r
                parent[other] = root
                node[r + SIZE] += node[s + SIZE]
                node[r + FLAG] |= node[s + FLAG]
    return key


@numba.njit(**_INLINE)
def _ranks_above(node, a: int, b: int) -> bool:
    """Whether set a beats set b for v1: larger AREA2, then larger FIRST."""
    area_a, area_b = node[a * 8 + AREA2], node[b * 8 + AREA2]
    return area_a > area_b or (area_a == area_b and node[a * 8 + FIRST] > node[b * 8 + FIRST])


@numba.njit(**_JIT)
def largest_outer_ious(key, h, w, gt, need, reps, n_reps):
    """IoU of the largest-area contour (the v1 box) of every needed level.

    Args:
        key: padded uint8 array [(H + 2) * (W + 2)] from :func:`outside_levels`.
        h, w: map size.
        gt: int64 array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report.
        reps, n_reps: :func:`ring_groups`.

    Returns:
        float64 array [257]; -1 where not needed.
    """
    wp = w + 2
    order, starts, ys, xs = _grouped_pixels(key, h, w)
    n = (h + 2) * wp
    parent = np.full(n, -1, np.int32)
    node = np.empty(n * 8, np.int32)
    # N pixels per 2x2 cell, indexed by the cell's top-left pixel; cells reaching into the ring
    # never get past 2, so they never count.
    cells = np.zeros(n, np.uint8)
    touched = np.empty(n, np.int32)
    is_touched = np.zeros(n, np.bool_)
    n_touched = 0
    roots = np.empty(n, np.int32)  # every set ever started; the live ones are still roots
    n_roots = 0
    ring = _ring_offsets(w)
    out = np.full(N_LEVELS, -1.0)
    win, win_area, win_first = -1, -1, -1
    for v in range(255, 0, -1):
        for j in range(starts[v], starts[v + 1]):
            q = np.int64(order[j])
            root, new = _insert8(parent, node, q, xs[j], ys[j], ring, reps, n_reps)
            if new:
                roots[n_roots] = q
                n_roots += 1
            # Every N pixel of a cell around q is 8-adjacent to q, so now in root's set; a
            # cell with 3 of 4 corners in N adds half a cell, the 4th corner the other half.
            add = 0
            for c in (q, q - 1, q - wp, q - wp - 1):
                cells[c] += 1
                add += cells[c] >= 3
            node[root * 8 + AREA2] += add
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
            if parent[r] == r and (best < 0 or _ranks_above(node, r, best)):
                best = r
        n_touched = 0
        # Untouched live sets rank below the previous winner (and have another FIRST).
        below = best < 0 or (
            node[best * 8 + AREA2] < win_area
            or (node[best * 8 + AREA2] == win_area and node[best * 8 + FIRST] < win_first)
        )
        if win_clean and below:
            best = win
        elif below:
            best, kept = -1, 0
            for i in range(n_roots):
                r = roots[i]
                if parent[r] != r:
                    continue
                roots[kept] = r
                kept += 1
                if best < 0 or _ranks_above(node, r, best):
                    best = r
            n_roots = kept
        if best < 0:
            continue  # F_v is empty (v above the map's maximum): no contour
        o = best * 8
        win, win_area, win_first = best, node[o + AREA2], node[o + FIRST]
        x1, y1 = min(node[o + X1] + 1, w - 1), min(node[o + Y1] + 1, h - 1)
        out[v] = max_iou(node[o + X0], node[o + Y0], x1, y1, gt)
    return out


def level_ious(s8: np.ndarray, gt: np.ndarray, need: np.ndarray, multi_contour: bool) -> np.ndarray:
    """Image score (max IoU over kept contours and GT boxes) of every needed level.

    Args:
        s8: uint8 array [H, W].
        gt: integer array [K, 4] of inclusive GT boxes.
        need: bool array [257]; levels to report (v in 1..255, at most max(s8): above it the
            foreground is empty and the reference's zero box is the caller's business).
        multi_contour: every contour (V2) or the largest-area one (v1).

    Returns:
        float64 array [257]; -1 where not needed.
    """
    s8 = np.ascontiguousarray(s8, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    need = np.ascontiguousarray(need, dtype=np.bool_)
    if multi_contour:
        outer = outer_box_ious(s8, gt, need, _REPS, _N_REPS)
        return np.maximum(outer, hole_box_ious(s8, gt, need))
    key = outside_levels(s8)
    return largest_outer_ious(key, s8.shape[0], s8.shape[1], gt, need, _REPS, _N_REPS)

"""Score-map, box and mask preparation against the reference's OpenCV/numpy expressions."""

import cv2
import numpy as np
import torch

from camlab.metrics import cams_to_scoremaps, rescale_boxes, resize_masks


def test_cams_to_scoremaps_matches_reference_pipeline():
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(4, 7, 7)).astype(np.float32)
    out = cams_to_scoremaps(torch.from_numpy(cams), (224, 224))
    assert out.dtype == torch.float64 and out.shape == (4, 224, 224)
    for cam, got in zip(cams, out.numpy(), strict=True):
        ref = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
        ref -= ref.min()
        ref /= ref.max()
        assert np.array_equal(got, ref)
        assert got.min() == 0.0 and got.max() == 1.0


def test_constant_and_nan_cams_become_zero_maps():
    cams = torch.ones(2, 7, 7)
    cams[1, 2, 2] = float("nan")
    out = cams_to_scoremaps(cams, (32, 32))
    assert torch.equal(out, torch.zeros(2, 32, 32, dtype=torch.float64))


def test_rescale_boxes_truncates_like_the_reference():
    boxes = torch.tensor([[10, 20, 299, 399], [0, 0, 1, 1]])
    got = rescale_boxes(boxes, orig_size=(300, 400), size=224)
    expected = [
        [
            int(x * 224.0 / 300.0) if i % 2 == 0 else int(x * 224.0 / 400.0)
            for i, x in enumerate(map(float, b))
        ]
        for b in boxes.tolist()
    ]
    assert got.tolist() == expected == [[7, 11, 223, 223], [0, 0, 0, 0]]


def test_resize_masks_nearest():
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, 1:3, 1:3] = 255
    out = resize_masks(mask, (8, 8))
    assert out.dtype == torch.bool
    assert out[0].nonzero().min().item() == 2 and out[0].sum().item() == 16

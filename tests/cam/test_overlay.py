"""Rendering: dtype/shape, colours, and boxes at the expected pixels."""

import pytest
import torch

from camlab.cam.overlay import colorize, denormalize, grid, overlay, render_cams
from camlab.errors import CamlabError


def test_denormalize_round_trip_gray_and_rgb():
    rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    norm = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = denormalize(norm, mean, std)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 4, 4)
    assert out[0, :, 0, 0].tolist() == [51, 128, 230]
    gray = denormalize(torch.zeros(1, 1, 4, 4), [0.5], [0.2])
    assert gray.shape == (1, 3, 4, 4) and (gray == 128).all()


def test_jet_colours_and_unknown_name():
    heat = colorize(torch.tensor([[[0.0, 1.0]]]))  # JET: 0 -> dark blue, 1 -> dark red (RGB)
    low, high = heat[0, :, 0, 0], heat[0, :, 0, 1]
    assert low[2] > 100 and low[0] == 0 and high[0] > 100 and high[2] == 0
    with pytest.raises(CamlabError, match="viridis"):
        colorize(torch.zeros(1, 2, 2), "nope")


def test_overlay_blends_and_resizes():
    images = torch.full((2, 3, 16, 16), 100, dtype=torch.uint8)
    out = overlay(images, torch.rand(2, 4, 4), alpha=0.0)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 16, 16) and (out == 100).all()
    out = overlay(images, torch.rand(2, 4, 4), alpha=1.0)
    assert not (out == 100).all()


def test_boxes_in_expected_colour_and_place():
    images = torch.zeros(1, 3, 32, 32)
    tiles = render_cams(
        images,
        torch.zeros(1, 4, 4),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        gt_boxes=[torch.tensor([[2, 2, 12, 12]])],
        pred_boxes=[torch.tensor([[18, 18, 30, 30]])],
        alpha=0.0,  # the image only: grey 128 background
    )
    tile = tiles[0]
    assert tile.shape == (3, 32, 32) and tile.dtype == torch.uint8
    assert tile[:, 2, 7].tolist() == [0, 255, 0]  # top edge of the ground-truth box
    assert tile[:, 18, 24].tolist() == [255, 0, 0]  # top edge of the predicted box
    assert tile[:, 7, 7].tolist() == [128, 128, 128]  # inside, untouched
    assert tile[:, 25, 5].tolist() == [128, 128, 128]  # outside both


def test_labels_and_grid():
    tiles = render_cams(torch.zeros(2, 1, 40, 80), torch.rand(2, 5, 5), [0.5], [0.5],
                        labels=["cat 0.91", ""])  # fmt: skip
    plain = render_cams(torch.zeros(1, 1, 40, 80), torch.zeros(1, 5, 5), [0.5], [0.5], alpha=0)
    labelled = render_cams(
        torch.zeros(1, 1, 40, 80), torch.zeros(1, 5, 5), [0.5], [0.5], labels=["x"], alpha=0
    )
    assert (labelled[0, :, :10, :10] != plain[0, :, :10, :10]).any()  # text strip drawn
    assert torch.equal(labelled[0, :, 30:], plain[0, :, 30:])  # rest untouched
    g = grid(tiles, nrow=2, padding=2)
    assert g.dtype == torch.uint8 and g.shape == (3, 44, 166)

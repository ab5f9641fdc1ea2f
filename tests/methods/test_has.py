"""Hide-and-Seek: which patches are hidden, by hand, for fixed random draws."""

import torch

from camlab.methods.has import HaS, hide_patches
from camlab.models.gap import GAPNet


def ramp(h: int, w: int, channels: int = 1) -> torch.Tensor:
    """``[1, channels, h, w]`` holding 1, 2, ..., h * w row by row in every channel."""
    return torch.arange(1.0, h * w + 1).view(1, 1, h, w).repeat(1, channels, 1, 1)


def test_seeded_draws_hide_exactly_the_patches_at_or_below_the_drop_rate():
    # torch's CPU generator with seed 0 draws 0.4963, 0.7682, 0.0885, 0.1320 (row-major over
    # the 2 x 2 patches of 2 x 2 pixels): the 1st, 3rd and 4th are <= 0.5 and are hidden.
    draws = torch.rand(4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(draws, torch.tensor([0.4963, 0.7682, 0.0885, 0.1320]), atol=1e-4)
    out = hide_patches(ramp(4, 4, channels=3), 2, 0.5, torch.Generator().manual_seed(0))
    expected = torch.tensor(
        [[0.0, 0.0, 3.0, 4.0],
         [0.0, 0.0, 7.0, 8.0],
         [0.0, 0.0, 0.0, 0.0],
         [0.0, 0.0, 0.0, 0.0]]
    )  # fmt: skip
    for channel in range(3):  # a hidden patch is hidden in every channel
        assert torch.equal(out[0, channel], expected)


def test_border_patches_are_cut_at_the_image_edge():
    # 5 x 5 pixels, grid 4: patches rows/cols [0:4] and [4:5]. Same seed-0 draws: patches
    # (0, 0), (1, 0), (1, 1) hidden; (0, 1) = column 4 of rows 0-3 kept.
    out = hide_patches(ramp(5, 5), 4, 0.5, torch.Generator().manual_seed(0))[0, 0]
    kept = out != 0
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0:4, 4] = True
    assert torch.equal(kept, expected)
    assert out[0, 4] == 5 and out[3, 4] == 20


def test_rates_zero_and_one_and_grid_zero():
    images = ramp(8, 8, channels=2)
    # u <= 0 has probability 0 (torch.rand is in [0, 1)); u <= 1 always holds.
    assert torch.equal(hide_patches(images, 4, 0.0), images)
    assert hide_patches(images, 4, 1.0).abs().sum() == 0
    assert hide_patches(images, 0, 1.0) is images  # the reference: grid size 0 is a no-op
    assert images.min() == 1  # the input is never modified in place


def test_each_image_and_patch_draws_independently():
    torch.manual_seed(1)
    out = hide_patches(torch.ones(64, 3, 32, 32), 4, 0.5)
    per_patch = out[:, 0, ::4, ::4]  # one pixel per 4 x 4 patch: [64, 8, 8]
    # Within a patch all pixels and channels agree ...
    assert torch.equal(out, per_patch.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
                       .expand_as(out))  # fmt: skip
    # ... and 4,096 Bernoulli(0.5) draws hide 50% +- 3 sd (0.78%).
    assert abs((per_patch == 0).float().mean().item() - 0.5) < 0.024
    assert not torch.equal(per_patch[0], per_patch[1])


def test_training_hides_patches_and_eval_is_the_plain_network():
    net = GAPNet(torch.nn.Identity(), 1, 2)  # the "features" are the image itself
    with torch.no_grad():
        net.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net.classifier.bias.zero_()
    method = HaS(net, "resnet18", 2, grid_size=2, drop_rate=0.5)
    torch.manual_seed(0)  # the method draws from the global generator: the seed-0 draws above
    loss, logits, feats = method.training_loss(
        net, ramp(4, 4), torch.tensor([0]), torch.nn.functional.cross_entropy
    )
    # Visible pixels 3 + 4 + 7 + 8 = 22 over 16: logits (1.375, -1.375).
    assert torch.allclose(logits, torch.tensor([[1.375, -1.375]]))
    assert torch.isclose(loss, torch.nn.functional.softplus(torch.tensor(-2.75)))
    seeded = torch.Generator().manual_seed(0)
    assert torch.equal(feats, hide_patches(ramp(4, 4), 2, 0.5, seeded))
    # Evaluation never hides anything: the method is not in the eval path at all.
    assert torch.allclose(net.eval()(ramp(4, 4)), torch.tensor([[8.5, -8.5]]))

"""Faithfulness metrics against pytorch-grad-cam / torchcam on the same inputs, and by hand.

The peers run on exactly the maps camlab gets: pytorch-grad-cam takes them as arrays, torchcam
through an extractor that returns them (its bilinear resize to the same size is the identity,
checked below). ROAD's imputation noise is random in both libraries, so the peer comparisons
use ``NoisyLinearImputer(noise=0)`` and camlab's ``noise=0``; the noise itself is tested
separately.
"""

import contextlib
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)
from torch import nn
from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric, _resize_cam
from torchmetrics.utilities.data import dim_zero_sum

from camlab.cam import compute_cam
from camlab.metrics import (
    ROAD,
    AverageDropIncrease,
    DeletionInsertion,
    FaithfulnessMetrics,
    PointingGame,
    cams_to_scoremaps,
    confidence_scores,
    deletion_insertion_curves,
    noisy_linear_impute,
    pointing_hits,
    road_keep_masks,
    road_scores,
)
from camlab.metrics.faithfulness import (
    _numpy_percentile,
    perturbation_counts,
    rise_blur,
    rise_blur_kernel,
)

SIZE = 48


class ChannelsLast(nn.Module):
    """The model fed channels-last, as camlab.metrics feeds it, so that the peers run the same
    forward: oneDNN's NCHW and channels-last convolutions round differently (~2e-6 in
    probability), which would hide the metrics' own differences at the 1e-6 checked here."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.contiguous(memory_format=torch.channels_last))


@pytest.fixture(scope="module")
def case():
    """resnet18 (5 classes, random weights), 4 images of 48 px, their Grad-CAM score maps."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    images = torch.randn(4, 3, SIZE, SIZE)
    labels = torch.tensor([0, 1, 2, 3])
    cams = compute_cam(model, images, "gradcam", targets=labels, target_layer="layer3")
    maps = cams_to_scoremaps(cams, (SIZE, SIZE)).float()  # bicubic + min-max, in [0, 1]
    assert maps.shape == (4, SIZE, SIZE) and float(maps.amax()) == 1.0
    return ChannelsLast(model).eval(), images, labels, maps


def smooth_maps(n: int, size: int, seed: int) -> torch.Tensor:
    """Min-max normalised bicubic upsamplings of random 6x6 grids (CAM-like blobs)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g)
    maps = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)[:, 0]
    low, high = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    return (maps - low) / (high - low)


def softmax_targets(labels):
    return [ClassifierOutputSoftmaxTarget(int(c)) for c in labels]


class GivenMaps:
    """A torchcam extractor that returns fixed maps, so torchcam scores camlab's inputs."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


class PixelSum(nn.Module):
    """Logits ``[sum of channel 0, 0]``: scores that can be worked out by hand."""

    def forward(self, x):
        total = x[:, 0].flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def test_torchcam_resize_is_the_identity_at_image_size(case):
    _, _, _, maps = case
    assert torch.equal(_resize_cam(maps, (SIZE, SIZE)), maps)


# ----------------------------------------------------------------------------- Average Drop


@pytest.mark.parametrize(
    "score, target", [("softmax", ClassifierOutputSoftmaxTarget), ("logit", ClassifierOutputTarget)]
)
def test_confidence_change_equals_pytorch_grad_cam(case, score, target):
    model, images, labels, maps = case
    targets = [target(int(c)) for c in labels]
    base, masked = confidence_scores(model, images, maps, labels, score=score)
    drop = DropInConfidence()(images, maps.numpy(), targets, model)
    increase = IncreaseInConfidence()(images, maps.numpy(), targets, model)
    # pytorch-grad-cam's drop is not divided by the original score
    np.testing.assert_allclose((base - masked).clamp_min(0).numpy(), drop, rtol=0, atol=1e-6)
    np.testing.assert_array_equal((masked > base).float().numpy(), increase)
    assert drop.max() > 0  # the comparison is not vacuous


def test_average_drop_and_increase_equal_torchcam(case):
    model, images, labels, maps = case
    peer = ClassificationMetric(GivenMaps(model, maps), functools.partial(torch.softmax, dim=-1))
    peer.update(images, class_idx=labels.tolist())
    metric = AverageDropIncrease()
    metric.update(model, images, maps, labels)
    out = metric.compute()
    expected = peer.summary()
    assert float(out["average_drop"]) == pytest.approx(100 * expected["avg_drop"], abs=1e-5)
    assert float(out["increase_in_confidence"]) == 100 * expected["conf_increase"]


def test_average_drop_by_hand():
    """Image of ones, maps [[1, .5], [0, 0]] and all ones: logit 4 -> 1.5 and 4 -> 4."""
    images = torch.ones(2, 1, 2, 2)
    maps = torch.tensor([[[1.0, 0.5], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    metric = AverageDropIncrease(score="logit")
    metric.update(PixelSum(), images, maps, torch.tensor([0, 0]))
    out = metric.compute()
    # (4 - 1.5) / 4 = 62.5 % for the first image, 0 for the second; no increase
    assert float(out["average_drop"]) == pytest.approx((62.5 + 0) / 2, abs=1e-4)
    assert float(out["increase_in_confidence"]) == 0
    # reusing the logits of the original images gives the same numbers with one pass less
    again = AverageDropIncrease(score="logit")
    again.update(PixelSum(), images, maps, torch.tensor([0, 0]), logits=PixelSum()(images))
    assert float(again.compute()["average_drop"]) == float(out["average_drop"])


# ---------------------------------------------------------------------- deletion / insertion


@pytest.mark.parametrize("steps, batch_size", [(7, 5), (20, 64), (48, 512)])
def test_deletion_insertion_equal_torchcam(case, steps, batch_size):
    """steps=7 leaves a short last step (2304 px = 6 x 330 + 324): points at true fractions."""
    model, images, labels, maps = case
    softmax = functools.partial(torch.softmax, dim=-1)
    peer = DeletionInsertionMetric(GivenMaps(model, maps), softmax, steps=steps, batch_size=64)
    peer.update(images, class_idx=labels.tolist())
    metric = DeletionInsertion(steps=steps, insertion_baseline="zeros", batch_size=batch_size)
    metric.update(model, images, maps, labels)
    out, expected = metric.compute(), peer.summary()
    assert float(out["deletion_auc"]) == pytest.approx(expected["deletion_auc"], abs=1e-6)
    assert float(out["insertion_auc"]) == pytest.approx(expected["insertion_auc"], abs=1e-6)


def test_deletion_insertion_by_hand():
    """Pixels 4, 3, 2, 1 in saliency order; logit = sum of the remaining (deleted) or present
    (inserted) pixels, zeros baseline, one pixel per step."""
    images = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    maps = torch.tensor([[[0.9, 0.7], [0.4, 0.1]]])
    fractions, deletion, insertion = deletion_insertion_curves(
        PixelSum(), images, maps, torch.tensor([0]), steps=4, score="logit"
    )
    assert fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert deletion.tolist() == [[10, 6, 3, 1, 0]]
    assert insertion.tolist() == [[0, 4, 7, 9, 10]]
    metric = DeletionInsertion(steps=4, score="logit", insertion_baseline="zeros")
    metric.update(PixelSum(), images, maps, torch.tensor([0]))
    out = metric.compute()
    # trapezoids: 0.25 * (10/2 + 6 + 3 + 1 + 0/2) and 0.25 * (0/2 + 4 + 7 + 9 + 10/2)
    assert float(out["deletion_auc"]) == pytest.approx(3.75)
    assert float(out["insertion_auc"]) == pytest.approx(6.25)


def test_perturbation_counts():
    assert perturbation_counts(2304, 7) == [0, 330, 660, 990, 1320, 1650, 1980, 2304]
    assert perturbation_counts(224 * 224, 224) == list(range(0, 224 * 225, 224))  # RISE's
    with pytest.raises(ValueError, match="steps"):
        perturbation_counts(10, 0)


def test_rise_blur_kernel_equals_scipy():
    from scipy import ndimage

    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    expected = ndimage.gaussian_filter(delta, 5).astype(np.float32)  # RISE's gkern(11, 5)
    np.testing.assert_allclose(rise_blur_kernel().numpy(), expected, rtol=0, atol=1e-8)


def rise_insertion_oracle(model, image, saliency, target, step, kernel):
    """RISE's ``CausalMetric.single_run`` for insertion, one image: start from the blurred
    image, restore ``step`` pixels per step in decreasing saliency, record the softmax score."""
    channels, height, width = image.shape
    weight = torch.zeros(channels, channels, *kernel.shape)
    for c in range(channels):
        weight[c, c] = kernel
    start = F.conv2d(image[None], weight, padding=kernel.shape[-1] // 2)[0].clone()
    order = np.argsort(-saliency.numpy().reshape(-1), kind="stable")
    n_steps = (height * width + step - 1) // step
    scores = []
    with torch.no_grad():
        for i in range(n_steps + 1):
            scores.append(float(model(start[None]).softmax(1)[0, target]))
            coords = order[step * i : step * (i + 1)]
            start.view(channels, -1)[:, coords] = image.reshape(channels, -1)[:, coords]
    return np.array(scores)


def test_blurred_insertion_follows_rise(case):
    from scipy import ndimage

    model, images, labels, maps = case
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    kernel = torch.from_numpy(ndimage.gaussian_filter(delta, 5).astype(np.float32))
    _, _, insertion = deletion_insertion_curves(
        model, images[:2], maps[:2], labels[:2], steps=16, insertion_baseline="blur"
    )
    for i in range(2):
        expected = rise_insertion_oracle(model, images[i], maps[i], int(labels[i]), 144, kernel)
        np.testing.assert_allclose(insertion[i].numpy(), expected, rtol=0, atol=1e-6)
    blurred = rise_blur(images)
    assert blurred.shape == images.shape and not torch.allclose(blurred, images)


# ------------------------------------------------------------------------------------- ROAD


def test_percentile_thresholds_are_numpys_bit_for_bit():
    g = torch.Generator().manual_seed(3)
    for trial in range(60):
        n = [1, 2, 3, 101, 2304, 5000][trial % 6]
        values = torch.rand(1, n, generator=g) ** 3
        if trial % 3 == 1:  # heavy ties, as in quantised maps
            values = (values * 7).round() / 7
        if trial % 3 == 2:  # neighbours one ulp apart: interpolation must round like NumPy
            values = torch.nextafter(values, torch.ones(()))
            values = torch.cat([values, torch.nextafter(values, torch.zeros(()))], dim=1)
        ordered = values.sort(dim=1).values
        for p in (0, 10, 20, 33, 50, 80, 90, 99, 100, 12.5, 66.6):
            assert float(_numpy_percentile(ordered, p)[0]) == np.percentile(values.numpy(), p)


def peer_keep_mask(order: str, percentile, cam: torch.Tensor) -> torch.Tensor:
    """The binary mask pytorch-grad-cam's Remove*RelevantFirst hands to its imputer."""
    seen = []
    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    remover(percentile, lambda img, mask: seen.append(mask))(torch.zeros(1), cam)
    return seen[0].bool()


@pytest.mark.parametrize("quantised", [False, True])
def test_road_masks_equal_pytorch_grad_cam(quantised):
    maps = smooth_maps(3, 40, seed=1)
    if quantised:
        maps = (maps * 8).round() / 8  # many ties at the thresholds
    percentiles = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    for order in ("morf", "lerf"):
        keeps = road_keep_masks(maps, percentiles, order)
        for j, p in enumerate(percentiles):
            for i in range(len(maps)):
                assert torch.equal(keeps[j, i], peer_keep_mask(order, p, maps[i])), (order, p)


def imputation_cases():
    """(images, keep): CAM-percentile holes, scattered pixels, borders, odd non-square size."""
    g = torch.Generator().manual_seed(5)
    maps = smooth_maps(3, 40, seed=2)
    yield torch.randn(3, 3, 40, 40, generator=g), road_keep_masks(maps, [10], "morf")[0]
    yield torch.randn(3, 3, 40, 40, generator=g), road_keep_masks(maps, [60], "lerf")[0]
    yield torch.randn(2, 3, 37, 23, generator=g), torch.rand(2, 37, 23, generator=g) > 0.3
    border = torch.ones(2, 31, 29, dtype=torch.bool)
    border[0, :, :3] = False  # the left columns
    border[1, -1] = False  # the bottom row
    border[1, 10:20, 5:25] = False
    yield torch.randn(2, 2, 31, 29, generator=g), border
    single = torch.zeros(1, 17, 19, dtype=torch.bool)
    single[0, 8, 3] = True  # one kept pixel: everything equals it
    yield torch.randn(1, 3, 17, 19, generator=g), single


def test_imputation_equals_pytorch_grad_cam():
    imputer = NoisyLinearImputer(noise=0.0)
    for images, keep in imputation_cases():
        out = noisy_linear_impute(images, keep, noise=0.0)
        expected = torch.stack(
            [imputer(img, k.float()) for img, k in zip(images, keep, strict=True)]
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        assert torch.equal(out * keep[:, None], images * keep[:, None])  # kept pixels as is
    single_image, single_keep = list(imputation_cases())[-1]
    alone = single_image[:, :, 8:9, 3:4].expand_as(single_image)
    assert torch.allclose(
        noisy_linear_impute(single_image, single_keep, noise=0.0), alone, atol=1e-6
    )


def test_imputation_without_or_with_all_pixels_removed():
    images = torch.randn(2, 3, 9, 9)
    assert torch.equal(
        noisy_linear_impute(images, torch.ones(2, 9, 9, dtype=torch.bool), 0.0), images
    )
    empty = noisy_linear_impute(images, torch.zeros(2, 9, 9, dtype=torch.bool), noise=0.0)
    assert torch.equal(empty, torch.zeros_like(images))  # no kept pixel: nothing to average


def test_imputation_noise():
    images = torch.randn(4, 3, 40, 40)
    keep = road_keep_masks(smooth_maps(4, 40, seed=3), [50], "morf")[0]
    clean = noisy_linear_impute(images, keep, noise=0.0)
    a = noisy_linear_impute(images, keep, 0.01, torch.Generator().manual_seed(7))
    b = noisy_linear_impute(images, keep, 0.01, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)  # a seeded generator reproduces the noise
    delta = (a - clean).permute(1, 0, 2, 3)
    assert torch.equal(delta[:, keep], torch.zeros_like(delta[:, keep]))  # only removed pixels
    assert float(delta[:, ~keep].std()) == pytest.approx(0.01, rel=0.05)
    assert abs(float(delta[:, ~keep].mean())) < 0.001


def peer_road_average(order, percentiles, images, maps, targets, model):
    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst

    def metric(p):
        return PerturbationConfidenceMetric(remover(p, NoisyLinearImputer(noise=0.0)))

    return AveragerAcrossThresholds(metric, percentiles)(images, maps.numpy(), targets, model)


@pytest.mark.parametrize(
    "score, target, percentiles",
    [
        ("softmax", ClassifierOutputSoftmaxTarget, [10, 20, 30, 40, 50, 60, 70, 80, 90]),
        ("logit", ClassifierOutputTarget, [25, 75]),
    ],
)
def test_road_equals_pytorch_grad_cam(case, score, target, percentiles):
    model, images, labels, maps = case
    targets = [target(int(c)) for c in labels]
    morf = peer_road_average("morf", percentiles, images, maps, targets, model)
    lerf = peer_road_average("lerf", percentiles, images, maps, targets, model)
    base, my_morf, my_lerf = road_scores(
        model, images, maps, labels, percentiles, score=score, noise=0.0, batch_size=3
    )
    np.testing.assert_allclose((my_morf - base).mean(0).numpy(), morf, rtol=0, atol=1e-6)
    np.testing.assert_allclose((my_lerf - base).mean(0).numpy(), lerf, rtol=0, atol=1e-6)
    metric = ROAD(percentiles, score=score, noise=0.0)
    metric.update(model, images, maps, labels)
    out = metric.compute()
    assert float(out["road_morf"]) == pytest.approx(morf.mean(), abs=1e-6)
    assert float(out["road_lerf"]) == pytest.approx(lerf.mean(), abs=1e-6)
    assert float(out["road"]) == pytest.approx(((lerf - morf) / 2).mean(), abs=1e-6)
    assert out["road_morf_curve"].shape == (len(percentiles),)
    assert np.abs(morf).max() > 1e-4  # the scores do move


def test_road_combined_with_noise_is_close_to_the_peer(case):
    """With ROAD's 0.01 noise (random in both), the combined score agrees to noise level."""
    model, images, labels, maps = case
    torch.manual_seed(0)
    peer = ROADCombined(percentiles=[20, 80])(images, maps.numpy(), softmax_targets(labels), model)
    metric = ROAD([20, 80], noise=0.01, seed=0)
    metric.update(model, images, maps, labels)
    assert float(metric.compute()["road"]) == pytest.approx(float(peer.mean()), abs=2e-3)


# --------------------------------------------------------------------------- pointing game


def test_pointing_game_by_hand():
    """Peaks at (x, y) = (30, 30) except image 1; TorchRay's strict ``d^2 < 15^2``."""
    maps = torch.zeros(6, 40, 40)
    maps[:, 30, 30] = 1
    maps[1] = 0
    maps[1, 5, 7] = 1  # peak (7, 5), inside its box
    boxes = torch.full((6, 2, 4), -1)
    boxes[0, 0] = torch.tensor([0, 0, 20, 20])  # dx = dy = 10: 200 < 225, hit
    boxes[1, 0] = torch.tensor([2, 2, 9, 9])  # peak inside, hit
    boxes[2, 0] = torch.tensor([0, 0, 20, 17])  # dx 10, dy 13: 269, miss
    boxes[3, 0] = torch.tensor([0, 0, 21, 18])  # dx 9, dy 12: 225, not < 225, miss
    boxes[4] = torch.tensor([[0, 0, 5, 5], [25, 39, 39, 39]])  # second box: dy = 9, hit
    # image 5: no box, skipped
    hit, valid = pointing_hits(maps, boxes)
    assert hit.tolist() == [True, True, False, False, True, False]
    assert valid.tolist() == [True, True, True, True, True, False]
    listed = [b[b[:, 0] >= 0] for b in boxes]  # the evaluation's list form
    assert pointing_hits(maps, listed)[0].tolist() == hit.tolist()
    assert not pointing_hits(maps, boxes, tolerance=0)[0].any()

    metric = PointingGame(num_classes=3)
    metric.update(maps, torch.tensor([0, 0, 1, 1, 2, 2]), boxes)
    out = metric.compute()
    # 3 hits of 5 scored; classes: 2/2, 0/2, 1/1
    assert float(out["pointing_game"]) == pytest.approx(60.0)
    assert float(out["pointing_game_class_mean"]) == pytest.approx((100 + 0 + 100) / 3)


def torchray_hit(mask: torch.Tensor, point, tolerance: int) -> bool:
    """TorchRay's ``PointingGame.evaluate`` test for one mask and point (u, v) = (x, y)."""
    v, u = torch.meshgrid(
        (torch.arange(mask.shape[0], dtype=torch.float32) - point[1]) ** 2,
        (torch.arange(mask.shape[1], dtype=torch.float32) - point[0]) ** 2,
        indexing="ij",
    )
    return bool((mask & ((v + u) < tolerance**2)).any())


def test_pointing_game_masks_follow_torchray():
    g = torch.Generator().manual_seed(11)
    maps = torch.rand(40, 50, 60, generator=g)
    masks = (smooth_maps(40, 60, seed=4)[:, :50] > 0.8).long()
    masks[::5][masks[::5] == 0] = 255  # ignored pixels are not foreground
    hit, valid = pointing_hits(maps, masks=masks, tolerance=8)
    peaks = [divmod(int(m.argmax()), 60) for m in maps]
    for i, (y, x) in enumerate(peaks):
        assert bool(hit[i]) == torchray_hit(masks[i] == 1, (x, y), 8)
    assert 0 < int(hit.sum()) < 40
    assert valid.all()
    # a filled box as a mask scores as the box
    boxes = torch.tensor([[[10, 20, 30, 35]]]).expand(40, 1, 4)
    filled = torch.zeros(40, 50, 60, dtype=torch.long)
    filled[:, 20:36, 10:31] = 1
    assert torch.equal(pointing_hits(maps, boxes)[0], pointing_hits(maps, masks=filled)[0])


# ------------------------------------------------------------------- torchmetrics behaviour


def test_batches_and_ranks_add_up(case):
    """Two halves (two ranks, merged as DDP sums them) give the whole batch's numbers."""
    model, images, labels, maps = case
    boxes = torch.tensor([[[4, 4, 20, 20]], [[0, 0, 47, 47]], [[30, 30, 40, 40]], [[-1] * 4]])

    def make():
        return FaithfulnessMetrics(5, steps=5, road_percentiles=[30, 70], road_noise=0.0)

    whole, first, second = make(), make(), make()
    whole.update(model, images, maps, labels, boxes=boxes)
    first.update(model, images[:2], maps[:2], labels[:2], boxes=boxes[:2])
    second.update(model, images[2:], maps[2:], labels[2:], boxes=boxes[2:])
    for a, b in zip(first._metrics(), second._metrics(), strict=True):
        a.merge_state(b)
    expected, merged = whole.compute(), first.compute()
    assert set(expected) == {
        "average_drop", "increase_in_confidence", "deletion_auc", "insertion_auc",
        "road_morf", "road_lerf", "road", "road_morf_curve", "road_lerf_curve",
        "pointing_game", "pointing_game_class_mean",
    }  # fmt: skip
    for name, value in expected.items():
        assert merged[name] == pytest.approx(value, abs=1e-6), name
    for metric in whole._metrics():  # every state is summed across DDP ranks
        assert all(fx is dim_zero_sum for fx in metric._reductions.values())


def test_model_mode_and_parameters_untouched(case):
    model, images, labels, maps = case
    model.train()
    try:
        stats = model.net.bn1.running_mean.clone()
        metric = FaithfulnessMetrics(5, steps=3, road_percentiles=[50], pointing=False)
        metric.update(model, images, maps, labels)
        assert model.training and all(m.training for m in model.modules())
        assert torch.equal(model.net.bn1.running_mean, stats)  # ran in eval mode
        assert all(p.grad is None for p in model.parameters())
        assert "pointing_game" not in metric.compute()
    finally:
        model.eval()


def test_bad_arguments(case):
    model, images, labels, maps = case
    with pytest.raises(ValueError, match="score"):
        AverageDropIncrease(score="probability")
    with pytest.raises(ValueError, match="baseline"):
        DeletionInsertion(insertion_baseline="noise")
    with pytest.raises(ValueError, match="percentiles"):
        ROAD([0, 120])
    with pytest.raises(ValueError, match="resolution"):
        AverageDropIncrease().update(model, images, maps[:, :24, :24], labels)
    with pytest.raises(ValueError, match="boxes or masks"):
        FaithfulnessMetrics(5, steps=2, road_percentiles=[50]).update(model, images, maps, labels)

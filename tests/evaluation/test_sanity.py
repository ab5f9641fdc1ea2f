"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): the similarity measures,
the randomised copies, the pass / fail verdict and evaluate.py metrics=[...,sanity]."""

import cv2
import numpy as np
import pytest
import torch
from conftest import evaluate
from scipy.stats import spearmanr

from camlab.cam.registry import CAM_METHODS, CamMethod
from camlab.classifier import GAPClassifier
from camlab.data import ShapesDataModule
from camlab.errors import CamlabError
from camlab.evaluate import scorable_metrics
from camlab.evaluation.randomization import RandomizedModels, fresh_parameters
from camlab.evaluation.sanity import SanityCheck
from camlab.metrics.similarity import (
    average_ranks,
    hog_features,
    hog_similarity,
    map_similarities,
    rank_correlation,
    ssim,
)

LAYERS = [
    "net.classifier", "net.features.backbone.layer4", "net.features.backbone.layer3",
    "net.features.backbone.layer2", "net.features.backbone.layer1", "net.features.backbone.bn1",
    "net.features.backbone.conv1",
]  # fmt: skip


@pytest.fixture(scope="module")
def model(trained):
    return GAPClassifier.load_from_checkpoint(
        trained / "checkpoints" / "last.ckpt", map_location="cpu"
    ).eval()


@pytest.fixture(scope="module")
def batch():
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    return next(iter(dm.test_dataloader()))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_unchanged(module, before):
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.grad is None for p in module.parameters())


# --- similarity measures -------------------------------------------------------------------


def test_ranks_and_spearman_by_hand_and_against_scipy():
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0], [0.0, 0.0, 0.0, 5.0]])
    assert average_ranks(x).tolist() == [[4.0, 1.0, 2.5, 2.5], [2.0, 2.0, 2.0, 4.0]]
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert rank_correlation(a, a**3).item() == pytest.approx(1.0, abs=1e-15)
    assert rank_correlation(a, -a).item() == pytest.approx(-1.0, abs=1e-15)
    # Ranks [1, 2, 3, 4] against [2, 1, 4, 3]: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 24 / 60
    assert rank_correlation(a, torch.tensor([[2.0, 1.0, 4.0, 3.0]])).item() == pytest.approx(0.6)
    # Constant maps: both constant = unchanged (1), one constant = unrelated (0).
    zeros = torch.zeros(1, 4)
    assert rank_correlation(zeros, zeros).item() == 1.0
    assert rank_correlation(zeros, a).item() == 0.0
    # Many ties, as ReLU-ed maps have: scipy's spearmanr to rounding.
    rng = np.random.default_rng(0)
    maps = np.maximum(rng.normal(size=(2, 3, 12, 12)), 0).round(1)
    ours = rank_correlation(torch.tensor(maps[0]), torch.tensor(maps[1])).numpy()
    ref = [spearmanr(p.ravel(), q.ravel())[0] for p, q in zip(maps[0], maps[1], strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_ssim_by_hand():
    zeros, ones = torch.zeros(1, 7, 7), torch.ones(1, 7, 7)
    # One 7 x 7 window: means 0 and 1, no variance: S = C1 / (1 + C1), C1 = 0.01^2.
    assert ssim(zeros, ones).item() == pytest.approx(1e-4 / (1 + 1e-4), rel=1e-12)
    x = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    # A map against its negative image: a negative structure term.
    assert ssim(x, 1 - x).max().item() < 0


def test_hog_of_a_ramp_by_hand():
    # Column index as value: horizontal gradient 2 inside, 0 on the border columns, so all the
    # magnitude is in orientation bin 0; cells 1.75 / 2 / 1.75 clip at 0.2 in L2-Hys, leaving
    # nine equal entries of 1/3 (up to the 1e-5 epsilon).
    ramp = torch.arange(24.0).expand(24, 24)[None]
    features = hog_features(ramp).view(3, 3, 9)  # one block: [cell row, cell col, bin]
    np.testing.assert_allclose(features[..., 0].numpy(), np.full((3, 3), 1 / 3), atol=1e-9)
    assert features[..., 1:].abs().max() == 0
    assert hog_similarity(ramp, 3 * ramp + 1).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 24 x 24"):
        hog_features(torch.zeros(1, 20, 30))


def test_ssim_and_hog_equal_skimage():
    skimage = pytest.importorskip("skimage")  # dev reference only
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a, b = rng.random((2, 3, 40, 37))
    a[0, :10] = 0  # flat areas: zero gradients and ties
    np.testing.assert_allclose(
        ssim(torch.tensor(a), torch.tensor(b)).numpy(),
        [structural_similarity(p, q, data_range=1.0) for p, q in zip(a, b, strict=True)],
        rtol=0, atol=1e-12,
    )  # fmt: skip
    # skimage sums its cells in float32: agreement to about 1e-7.
    np.testing.assert_allclose(
        hog_features(torch.tensor(a)).numpy(), np.stack([hog(p) for p in a]), atol=1e-6
    )
    assert skimage.__version__


def test_map_similarities_measure_signed_and_absolute_maps():
    x = torch.linspace(-1, 1, 32 * 32).view(1, 32, 32)
    sims = map_similarities(x, -x)
    assert sims["spearman"].item() == pytest.approx(-1.0)
    assert sims["spearman_abs"].item() == pytest.approx(1.0)  # |x| = |-x|
    # Ranks and min-max normalised maps ignore scale and shift; absolute values do not.
    same = map_similarities(x, 2 * x + 3)
    for measure in ("spearman", "ssim", "hog"):
        assert same[measure].item() == pytest.approx(1.0, abs=1e-12), measure
    assert same["spearman_abs"].item() < 0.5


# --- randomised copies ---------------------------------------------------------------------


def test_cascading_and_independent_touch_exactly_the_intended_layers(model):
    before = snapshot(model)
    copies = RandomizedModels(model, LAYERS, seed=3)
    trained = dict(model.named_parameters())
    fresh = {
        f"{name}.{p}": value
        for k, name in enumerate(LAYERS)
        for p, value in fresh_parameters(model.get_submodule(name), 3 + k).items()
    }

    def randomised(copy) -> set[str]:
        out = set()
        for name, p in copy.named_parameters():
            if name in fresh and torch.equal(p, fresh[name]):
                out.add(name)
            else:
                assert torch.equal(p, trained[name]), name
        return out

    def inside(layers) -> set[str]:
        return {n for n in fresh if any(n.startswith(layer + ".") for layer in layers)}

    for k, (name, copy) in enumerate(copies.cascading()):
        assert name == LAYERS[k] and randomised(copy) == inside(LAYERS[: k + 1])
        assert copy is not model
    for k, (name, copy) in enumerate(copies.independent()):
        assert name == LAYERS[k] and randomised(copy) == inside([name])
    assert randomised(copies.copy) == set()  # restored after each pass
    # Buffers (BatchNorm statistics) are kept; the re-initialisation is the layers' own.
    assert torch.equal(fresh["net.features.backbone.bn1.weight"], torch.ones(64))
    assert torch.equal(
        copies.copy.state_dict()["net.features.backbone.bn1.running_var"],
        before["net.features.backbone.bn1.running_var"],
    )
    assert len(inside(LAYERS)) == len(fresh) == 62
    assert_unchanged(model, before)
    shared = {p.data_ptr() for p in model.parameters()} & {
        p.data_ptr() for p in copies.copy.parameters()
    }
    assert not shared


def test_a_map_that_ignores_the_weights_fails_and_cam_passes(model, batch, monkeypatch):
    def edges(inp):  # the image's gradient magnitude: no weight involved
        gray = inp.images.mean(1)
        gy, gx = torch.gradient(gray, dim=(1, 2))
        return torch.hypot(gx, gy)[:, None].expand(-1, inp.targets.shape[1], -1, -1)

    monkeypatch.setitem(CAM_METHODS, "edges", CamMethod(edges))
    before = snapshot(model)
    images, labels = batch["image"][:2], batch["label"][:2]
    check = SanityCheck(
        model, ["cam", "gradcam", "edges"], num_images=2, label_data=(batch["image"][4:12],
        batch["label"][4:12]), label_steps=2, label_batch_size=4,
    )  # fmt: skip
    check.update(images, labels)
    out = check.compute()
    assert_unchanged(model, before)

    edge = out["edges"]
    assert edge["passes"] is False
    for mode in ("cascading", "independent"):
        for values in edge[mode].values():
            assert values == pytest.approx([1.0] * 7, abs=1e-12)
    assert edge["labels"]["ssim"] == pytest.approx(1.0, abs=1e-12)

    cam = out["cam"]
    assert cam["layers"] == LAYERS and cam["num_images"] == 2
    assert cam["passes"] is True and out["gradcam"]["passes"] is True
    full = cam["full_randomization"]
    assert full == {m: v[-1] for m, v in cam["cascading"].items()}
    assert abs(full["spearman_abs"]) < 0.5 and full["ssim"] < 0.6
    # The head alone changes CAM's maps; randomising both modes' first layer is one model.
    assert cam["independent"]["ssim"][0] == cam["cascading"]["ssim"][0] < 0.9
    assert cam["labels"]["steps"] == 2 and cam["labels"]["num_images"] == 8
    assert 0 <= cam["labels"]["permuted_accuracy"] <= 100


def test_sanity_errors(model):
    with pytest.raises(CamlabError, match="cascading, independent or both"):
        SanityCheck(model, ["cam"], mode="sideways")
    with pytest.raises(CamlabError, match="names no CAM method"):
        SanityCheck(model, [])
    with pytest.raises(CamlabError, match="not a module with parameters"):
        SanityCheck(model, ["cam"], layers=["net.pool"])
    with pytest.raises(CamlabError, match="lies inside"):
        SanityCheck(
            model,
            ["cam"],
            layers=["net.features", "net.classifier", "net.features.backbone.layer4"],
        )
    dm = ShapesDataModule(train_size=64, val_size=32, test_size=24, num_workers=0)
    assert scorable_metrics(dm, "test", None) == {"boxes", "pxap"}  # opt-in
    assert scorable_metrics(dm, "test", ["boxes", "sanity"]) == {"boxes", "sanity"}


# --- evaluate.py ---------------------------------------------------------------------------


def test_evaluate_writes_sanity_results_and_plots(trained, model, batch, tmp_path):
    before = snapshot(model)
    out = evaluate(
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", "metrics=[boxes,sanity]",
        "cam.methods=[cam,gradcam,center]", "sanity.num_images=2", "sanity.mode=cascading",
        "sanity.label_steps=2", "sanity.label_images=8", "sanity.label_batch_size=4",
        "num_workers=0", run_dir=tmp_path,
    )  # fmt: skip
    # The same check by hand on the split's first 2 images (the 8 after them for the labels).
    direct = SanityCheck(
        model, ["cam", "gradcam"], mode="cascading", num_images=2, label_steps=2,
        label_data=(batch["image"][2:10], batch["label"][2:10]), label_batch_size=4,
    )  # fmt: skip
    direct.update(batch["image"][:2], batch["label"][:2])
    expected = direct.compute()
    for method in ("cam", "gradcam"):
        got = out["methods"][method]
        assert "max_box_acc_v2" in got  # the box metrics are still there
        sanity = got["sanity"]
        assert "independent" not in sanity and sanity["num_images"] == 2
        for measure, values in expected[method]["cascading"].items():
            assert sanity["cascading"][measure] == pytest.approx(values, abs=1e-9)
            assert sanity["labels"][measure] == pytest.approx(
                expected[method]["labels"][measure], abs=1e-9
            )
        assert sanity["passes"] == expected[method]["passes"]
        image = cv2.imread(str(tmp_path / f"sanity_{method}.png"))
        assert image is not None and image.shape[0] > 100
    assert "sanity" not in out["methods"]["center"]  # a baseline ignores the classifier
    assert not (tmp_path / "sanity_center.png").exists()
    assert_unchanged(model, before)

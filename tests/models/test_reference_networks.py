"""The wsolevaluation reference's 24 networks (``camlab.models.reference``), each with the camlab
method that trains it, against numbers made by running the reference's own code on the same
weights and input (``fixtures/reference_networks.json``; ``fixtures/README.md`` says how).

Each network's 224 px forward passes run once (``run``, cached for the module); the checks of
names, shapes, learning rates and pretrained loading build the networks on the meta device (no
memory, no initialisation). ~22 s at 1 thread. Train mode is checked at 14x14 only: the 28x28
networks' layers and taps are the 14x14 ones', their strides and pools those their eval passes
check (a 28x28 train pass would add ~11 s to the suite).
"""

import functools
import json
import math
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from camlab.cam.engine import cam_from_features
from camlab.errors import CamlabError
from camlab.methods import build_method
from camlab.methods.base import WSOLMethod, label_cam
from camlab.methods.reference import (
    load_reference_state_dict,
    reference_key_map,
    reference_param_groups,
    reference_state_dict,
)
from camlab.models.reference import (
    ReferenceNet,
    build_reference_net,
    load_torchvision_weights,
    torchvision_sources,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "reference_networks.json").read_text())
NETWORKS = FIXTURE["networks"]
NAMES = list(NETWORKS)
NUM_CLASSES = 200
LABELS = torch.tensor([3, 7])
SPG_SIZE = (224, 224)  # the reference upsamples SPG's maps to 224 x 224 whatever the input


def split(name: str) -> tuple[str, str, bool]:
    arch, kind, lfm = name.split("/")
    return arch, kind, lfm == "lfm=True"


def of_kind(*kinds: str) -> list[str]:
    return [n for n in NAMES if split(n)[1] in kinds]


def build(name: str, num_classes: int = NUM_CLASSES) -> tuple[ReferenceNet, WSOLMethod]:
    """The network and its method on the meta device (shapes only, no initialisation)."""
    arch, kind, lfm = split(name)
    with torch.device("meta"):
        net = build_reference_net(arch, kind, num_classes, lfm)
        return net, build_method(kind, net, arch, num_classes)


# For the checks that only read names and shapes (they must not change what they get).
shapes_only = functools.cache(build)


def layout(name: str) -> dict[str, tuple[tuple[int, ...], str, str | None]]:
    """Reference key -> (shape, lr multiplier or "buf", torchvision source key or None), in
    the reference's state-dict order. The fixture leaves the BatchNorm buffers out: each
    follows its weight (same source, its own leaf name)."""
    rows = FIXTURE["layouts"][name]
    if isinstance(rows, str):  # "same as <other lfm>"
        rows = FIXTURE["layouts"][rows.removeprefix("same as ")]
    out = {}
    for row in rows:
        key, shape, mult, src = row.split(" ")
        shape = tuple(int(s) for s in shape.split("x"))
        src = None if src == "-" else key if src == "=" else src
        out[key] = (shape, mult, src)
    return out


def bn_buffers(table: dict) -> dict[str, str | None]:
    """The BatchNorm buffers implied by the layout: reference key -> torchvision source."""
    out = {}
    for key, (shape, _, src) in table.items():
        module, _, leaf = key.rpartition(".")
        if leaf == "weight" and len(shape) == 1:  # only BatchNorm has 1-d weights here
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                out[f"{module}.{buf}"] = src and f"{src.rpartition('.')[0]}.{buf}"
    return out


@functools.lru_cache(maxsize=512)  # about one network's keys: the next lfm variant reuses them
def det_value(key: str, shape: tuple[int, ...]) -> Tensor:
    """The fixture's deterministic weights (its meta "weights"): seeded by the key's crc32."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if key.endswith("bias"):
        return 0.05 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 1 + 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:]))


def det_state(net: ReferenceNet, method: WSOLMethod) -> dict[str, Tensor]:
    """The deterministic weights in the reference's names (``num_batches_tracked`` left 0)."""
    return {
        key: torch.zeros((), dtype=torch.long)
        if key.endswith("num_batches_tracked")
        else det_value(key, tuple(value.shape))
        for key, value in reference_state_dict(net, method).items()
    }


def class_maps(classifier: nn.Linear, feats: Tensor) -> Tensor:
    """Every class's map ``[B, K, h, w]``: the reference's 1x1-conv head output."""
    return torch.einsum("kc,bchw->bkhw", classifier.weight, feats) + classifier.bias[:, None, None]


def reference_cam(arch: str, net: ReferenceNet, feats: Tensor, labels: Tensor) -> Tensor:
    """The reference's ``return_cam`` for cam/adl (and SPG's, with the label map's bias):
    VGG / ResNet the mean over channels of ``w_label * A`` (no bias), Inception and SPG the
    label channel of the class maps (bias included)."""
    if arch == "inception_v3" or net.kind == "spg":
        return label_cam(net.classifier, feats, labels)[:, 0]
    weight = net.classifier.weight[labels]
    return torch.einsum("bc,bchw->bhw", weight, feats) / feats.shape[1]


def forward(name: str, net: ReferenceNet, method: WSOLMethod, x: Tensor) -> dict[str, Tensor]:
    """The outputs the fixture records, under its names. ACoL's branches and SPG's losses run
    at the labels (the fixture's train pass and its CAM); SPG's eval ``attention`` at the
    argmax (the reference's ``labels=None``), its train one at the labels."""
    arch, kind, _ = split(name)
    labels = LABELS[: len(x)]
    out: dict[str, Tensor] = {}
    if kind == "acol":
        logits, feats, logits_b, feats_b = method.branches(net, x, labels)
        out |= {
            "logits": logits,
            "feat_map_a": class_maps(net.classifier, feats),
            "logit_b": logits_b,
            "feat_map_b": class_maps(method.classifier_b, feats_b),
            "cam": method.cam_from_branches(net, feats, feats_b, labels),
            "loss": F.cross_entropy(logits, labels) + F.cross_entropy(logits_b, labels),
        }
        return out
    if kind == "spg":
        logits, feats, b1, b2, c = method.branches(net, x)
        cam = label_cam(net.classifier, feats, labels)
        for prefix, targets in (("eval_", logits.argmax(1)), ("", labels)):
            att, _, fused = method.attention_maps(
                label_cam(net.classifier, feats, targets), b1, b2, SPG_SIZE
            )
            out |= {f"{prefix}attention": att, f"{prefix}fused_attention": fused}
        losses = method.guidance_losses(cam, b1, b2, c, SPG_SIZE)
        out |= {"logits": logits, "logits_b1": b1, "logits_b2": b2, "logits_c": c,
                "loss": F.cross_entropy(logits, labels) + sum(losses)}  # fmt: skip
    else:
        logits, feats = net.forward_with_features(x)
        out["logits"] = logits
    out["cam"] = reference_cam(arch, net, feats, labels)
    weight = net.classifier.weight
    out["camlab_cam"] = cam_from_features(feats, weight, targets=labels, normalize=True)
    return out


def loaded(name: str) -> tuple[ReferenceNet, WSOLMethod]:
    """The network and its method with the deterministic weights."""
    net, method = build(name)
    nn.ModuleDict({"net": net, "method": method}).to_empty(device="cpu")
    load_reference_state_dict(net, method, det_state(net, method))
    return net, method


def fixed_input() -> Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def train_pass_is_slow(name: str) -> bool:
    """The 28x28 train passes, the file's slowest (~11 s of forward passes at 1 thread): not
    run (see the module docstring)."""
    return split(name)[2]


def shares_train_pass(name: str) -> bool:
    """VGG has no BatchNorm and no dropout, so its train pass is its eval pass."""
    return split(name)[0] == "vgg16"


def train_mode(net: ReferenceNet, method: WSOLMethod) -> None:
    """Batch statistics, dropout off (as in the fixture, which disabled the reference's)."""
    net.train()
    method.train()
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.eval()


@functools.cache
def run(name: str) -> dict[str, dict[str, Tensor]]:
    """Each network's 224 px passes on the fixture's input, once: ``eval``, and ``train`` for
    ACoL / SPG unless that is slow. In eval mode the two images do not interact (BatchNorm's
    running statistics, no dropout), so the first alone checks the network at half the cost;
    a train pass needs both (and for VGG is its eval pass)."""
    net, method = loaded(name)
    x = fixed_input()
    wants_train = split(name)[1] in ("acol", "spg") and not train_pass_is_slow(name)
    with torch.no_grad():
        if wants_train and shares_train_pass(name):
            both = forward(name, net.eval(), method.eval(), x)
            return {"eval": both, "train": both}
        out = {"eval": forward(name, net.eval(), method.eval(), x[:1])}
        if wants_train:
            train_mode(net, method)
            out["train"] = forward(name, net, method, x)
    return out


def run_train(name: str) -> dict[str, Tensor]:
    """Train-mode outputs on both images."""
    if "train" in run(name):
        return run(name)["train"]
    net, method = loaded(name)
    train_mode(net, method)
    with torch.no_grad():
        return forward(name, net, method, fixed_input())


def check_summary(actual: Tensor, expected: dict, what: str) -> None:
    """A tensor against the fixture's summary of both images (shape, first values, min, max,
    sum), within 1e-3 of its largest magnitude per element; the sum within sqrt(n) of that
    plus 1e-4 of its size (errors that move every element alike, as a min-max normalisation's
    under another CPU kernel, add up: Inception-SPG's attention sum moved 1.8e-5 relative under
    ATEN_CPU_CAPABILITY=default). For the first image alone: its shape and first values (the
    rest spans both)."""
    assert list(actual.shape[1:]) == expected["shape"][1:], what
    tol = 1e-3 * max(abs(expected["min"]), abs(expected["max"]))
    flat = actual.detach().double().flatten()
    first = torch.tensor(expected["first8"], dtype=torch.double)
    assert (flat[: len(first)] - first).abs().max() <= tol, (what, flat[:8], first)
    if actual.shape[0] == expected["shape"][0]:
        assert abs(flat.min() - expected["min"]) <= tol, what
        assert abs(flat.max() - expected["max"]) <= tol, what
        sum_tol = tol * math.sqrt(flat.numel()) + 1e-4 * abs(expected["sum"])
        assert abs(flat.sum() - expected["sum"]) <= sum_tol, what


def check_logits(actual: Tensor, expected: list[dict], what: str) -> None:
    """Per image: the first 16 logits, logsumexp, sum and argmax (the images run)."""
    for logits, summary in zip(actual.double(), expected[: len(actual)], strict=True):
        tol = 1e-3 * logits.abs().max()
        first = torch.tensor(summary["first16"], dtype=torch.double)
        assert (logits[:16] - first).abs().max() <= tol, (what, logits[:16], first)
        assert abs(torch.logsumexp(logits, 0) - summary["logsumexp"]) <= tol, what
        assert abs(logits.sum() - summary["sum"]) <= tol * math.sqrt(logits.numel()), what
        assert int(logits.argmax()) == summary["argmax"], what


@pytest.mark.parametrize("name", NAMES)
def test_feature_map_size_at_224(name):
    hw = list(run(name)["eval"]["cam"].shape[-2:])  # the CAM layer's size
    assert hw == NETWORKS[name]["cam_hw"] == ([28, 28] if split(name)[2] else [14, 14])


@pytest.mark.parametrize("name", NAMES)
def test_eval_outputs_match_the_reference(name):
    out, expected = run(name)["eval"], NETWORKS[name]
    check_logits(out["logits"], expected["eval_logits"], name)
    for key, summary in expected["eval_outputs"].items():  # ACoL's class maps, SPG's branches
        ours = f"eval_{key}" if key in ("attention", "fused_attention") else key
        check_summary(out[ours], summary, f"{name} {key}")


@pytest.mark.parametrize("name", NAMES)
def test_cam_matches_the_reference(name):
    cam, expected = run(name)["eval"]["cam"], NETWORKS[name]["cam"]
    assert list(cam.shape[1:]) == expected["shape"][1:]
    for image, summary in zip(cam.double(), expected["per_image"][: len(cam)], strict=True):
        tol = 1e-3 * max(abs(summary["min"]), abs(summary["max"]))
        pooled = F.adaptive_avg_pool2d(image[None], 4).flatten()
        assert (pooled - torch.tensor(summary["avgpool4x4"])).abs().max() <= tol, name
        assert abs(image.min() - summary["min"]) <= tol and abs(image.max() - summary["max"]) <= tol
        assert abs(image.sum() - summary["sum"]) <= tol * math.sqrt(image.numel()), name
        assert int(image.flatten().argmax()) == summary["argmax_flat"], name
    if split(name)[1] != "acol":
        # camlab's CAM (sum_c w_c A_c) is the reference's up to a positive scale and a
        # per-image shift: equal after the min-max normalisation every metric applies.
        lo = cam.amin((1, 2), keepdim=True)
        normalised = (cam - lo) / (cam.amax((1, 2), keepdim=True) - lo)
        assert torch.allclose(run(name)["eval"]["camlab_cam"], normalised, atol=1e-4)


TRAIN_CASES = [n for n in of_kind("acol", "spg") if not train_pass_is_slow(n)]


@pytest.mark.parametrize("name", TRAIN_CASES)
def test_train_mode_outputs_match_the_reference(name):
    out, expected = run_train(name), NETWORKS[name]["train"]
    check_logits(out["logits"], expected["logits"], name)
    for key, summary in expected["outputs"].items():
        check_summary(out[key], summary, f"{name} train {key}")
    # The loss the reference's get_loss gives on these outputs (SPG: with its thresholds).
    assert math.isclose(out["loss"].item(), expected["reference_get_loss"], rel_tol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_names_and_shapes_are_the_references(name):
    net, method = shapes_only(name)
    table = layout(name)
    ours = {k: tuple(v.shape) for k, v in reference_state_dict(net, method).items()}
    params = {k: shape for k, shape in ours.items() if k in table}
    assert params == {k: shape for k, (shape, _, _) in table.items()}
    assert set(ours) - set(params) == set(bn_buffers(table))


def test_reference_weights_round_trip():
    net, method = build("inception_v3/spg/lfm=False")  # network, method and 1x1-conv heads
    nn.ModuleDict({"net": net, "method": method}).to_empty(device="cpu")
    state = det_state(net, method)
    load_reference_state_dict(net, method, state)
    back = reference_state_dict(net, method)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], v) for k, v in state.items())
    assert torch.equal(net.classifier.weight, state["SPG_A4.weight"][:, :, 0, 0])


@pytest.mark.parametrize("name", NAMES)
def test_learning_rate_groups_are_the_references(name):
    net, method = shapes_only(name)
    groups = reference_param_groups(net, method, lr=0.5)
    mult = {id(p): g["lr_mult"] for g in groups for p in g["params"]}
    assert all(g["lr"] == 0.5 * g["lr_mult"] for g in groups)
    key_map, table = reference_key_map(net, method), layout(name)
    named = nn.ModuleDict({"net": net, "wsol_method": method}).named_parameters()
    got = {key_map.to_reference(n): mult[id(p)] for n, p in named}
    assert got == {k: float(m) for k, (_, m, _) in table.items() if m != "buf"}


@functools.cache
def torchvision_state(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict layout (meta tensors; Inception with its aux head,
    as the reference downloads it)."""
    kwargs = {"aux_logits": True, "init_weights": False} if arch == "inception_v3" else {}
    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None, **kwargs).state_dict()


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_weights_load_where_the_reference_loads_them(name):
    net, _ = shapes_only(name)
    arch, kind, _ = split(name)
    table = layout(name)
    expected = {k: src for k, (_, _, src) in table.items()} | bn_buffers(table)
    sources = torchvision_sources(net, torchvision_state(arch), "CUB")
    assert sources == {k: src for k, src in expected.items() if src is not None}
    study = FIXTURE["pretrained_dataset_name_study"][f"{arch}/{kind}"]
    assert len(sources) == study["CUB_200"]["n_loaded"]
    on_imagenet = torchvision_sources(net, torchvision_state(arch), "ILSVRC")
    assert len(on_imagenet) == study["ILSVRC_1000"]["n_loaded"]  # 2 more: ResNet cam/adl's fc
    loaded = load_torchvision_weights(net, torchvision_state(arch), "CUB")
    assert {net.key_map.to_reference(k): tv for k, tv in loaded.items()} == sources


@pytest.mark.parametrize("kind", ["cam", "adl"])
def test_resnet50_keeps_the_imagenet_fc_on_ilsvrc_only(kind):
    study = FIXTURE["pretrained_dataset_name_study"][f"resnet50/{kind}"]
    assert study["ILSVRC_1000"] == {"strict": True, "n_loaded": 320}
    assert "size mismatch for fc.weight" in study["ILSVRC_200"]["error"]
    net, _ = build(f"resnet50/{kind}/lfm=False", num_classes=1000)
    tv = torchvision.models.resnet50(weights=None).state_dict()  # real values, to follow them
    net.to_empty(device="cpu")
    loaded = load_torchvision_weights(net, tv, "ILSVRC")
    assert len(loaded) == 320 and loaded["classifier.weight"] == "fc.weight"
    assert torch.equal(net.classifier.weight, tv["fc.weight"])
    # ADL's shift: the reference's layer3.2 (after its ADL) is torchvision's layer3.1.
    block = net.features.backbone.layer3[1].conv1.weight
    assert torch.equal(block, tv["layer3.1.conv1.weight"])
    with pytest.raises(CamlabError, match="num_classes=1000"):
        load_torchvision_weights(shapes_only(f"resnet50/{kind}/lfm=False")[0], tv, "ILSVRC")


def adl_position(ref_name: str, siblings: list[str]) -> str:
    """Where camlab hooks the ADL that the reference inserts as ``ref_name``: after the layer
    before it, counted without the reference's ADL layers. Inception's are named attributes
    (NOTES 3.3: after Mixed_5d, after Mixed_6e, after SPG_A3_2b's conv + ReLU = our neck)."""
    named = {"ADL_5d": "backbone.Mixed_5d", "ADL_6e": "backbone.Mixed_6e", "ADL_A3_2b": "neck"}
    if ref_name in named:
        return named[ref_name]
    container, index = ref_name.rsplit(".", 1)
    before = sum(int(s.rsplit(".", 1)[1]) < int(index) for s in siblings if s.startswith(container))
    ours = "backbone" if container == "features" else f"backbone.{container}"
    return f"{ours}.{int(index) - before - 1}"


@pytest.mark.parametrize("name", of_kind("adl"))
def test_adl_sits_where_the_reference_inserts_it(name):
    net, method = shapes_only(name)
    ref = NETWORKS[name]["adl_modules"]
    assert method.positions == [adl_position(r, ref) for r in ref]
    assert len(net.features._forward_hooks) == 0  # hooks on the layers, not on the whole
    for position in method.positions:
        assert len(net.features.get_submodule(position)._forward_hooks) == 1


def test_acol_erases_the_backbone_output_and_trains_it_through_branch_b():
    # Branch B's loss reaches the backbone through the erased features, but not branch A's
    # head: the erasing map is computed from a detached copy and thresholded.
    torch.manual_seed(0)
    net = build_reference_net("vgg16", "acol", 3)
    acol = build_method("acol", net, "vgg16", 3)
    _, _, logits_b, _ = acol.branches(net, torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    F.cross_entropy(logits_b, torch.tensor([0, 2])).backward()
    grad = net.features.backbone[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in [*net.features.neck.parameters(), net.classifier.weight])
    assert all(p.grad is not None for p in acol.parameters())


@pytest.mark.parametrize(("method", "kind"), [("acol", "cam"), ("has", "spg"), ("cam", "adl")])
def test_a_reference_network_refuses_another_method(method, kind):
    with torch.device("meta"):
        net = build_reference_net("resnet50", kind, 3)
        with pytest.raises(CamlabError, match=f"method={method} trains the reference's"):
            build_method(method, net, "resnet50", 3)


def test_gap_classifier_with_a_reference_network_saves_and_loads_alone(tmp_path):
    """``model.arch=reference``: GAPClassifier builds the reference's network for its method,
    forms the reference's two lr groups (new layers at the optimizer's lr, the rest at
    ``backbone_lr_mult`` times it) and rebuilds from its checkpoint alone."""
    import functools

    import pytorch_lightning as pl

    from camlab.classifier import GAPClassifier
    from camlab.errors import CamlabError

    torch.manual_seed(0)
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    model = GAPClassifier(
        backbone="vgg16", num_classes=3, arch="reference", large_feature_map=True,
        method="acol", image_size=64, optimizer=sgd,
    )  # fmt: skip
    assert isinstance(model.net, ReferenceNet) and model.net.kind == "acol"
    groups = {g["name"]: g for g in model.configure_optimizers().param_groups}
    assert groups["head"]["lr"] == 0.1 and groups["backbone"]["lr"] == pytest.approx(0.01)
    head = {id(p) for p in groups["head"]["params"]}
    assert id(model.wsol_method.classifier_b.weight) in head  # ACoL's branch B: new, fast
    assert all(id(p) not in head for p in model.net.features.backbone.parameters())
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = GAPClassifier.load_from_checkpoint(str(tmp_path / "m.ckpt"))
    assert loaded.hparams.arch == "reference" and loaded.hparams.large_feature_map is True
    state, got = model.state_dict(), loaded.state_dict()
    assert state.keys() == got.keys() and all(torch.equal(state[k], got[k]) for k in state)
    with torch.no_grad():
        assert loaded.net.forward_features(torch.zeros(1, 3, 64, 64)).shape[-2:] == (8, 8)

    with pytest.raises(CamlabError, match="model.arch=reference"):
        GAPClassifier(backbone="vgg16", large_feature_map=True)  # a reference-only option
    with pytest.raises(CamlabError, match="model.backbone='resnet18' does not apply"):
        GAPClassifier(backbone="resnet18", arch="reference")
    with pytest.raises(CamlabError, match="one of torchvision, reference, timm"):
        GAPClassifier(backbone="vgg16", arch="keras")

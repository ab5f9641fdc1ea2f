"""A CAM call leaves the model, its gradients, the RNG and the hook tables as it found them."""

import gc

import pytest
import torch
import torch.distributed as dist
from torch import nn

from camlab.cam import CAM_METHODS, compute_cam

GRAD_METHODS = [m for m in CAM_METHODS if CAM_METHODS[m].needs_grads]
# Methods with their own backward passes (FullGrad to the input, SmoothGrad-CAM++ per sample).
BACKWARD_METHODS = [*GRAD_METHODS, "fullgrad", "smoothgradcam++"]


def _hooks(model: nn.Module) -> int:
    tables = (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
        "_state_dict_hooks", "_forward_hooks_with_kwargs",
    )  # fmt: skip
    return sum(len(getattr(m, t, {})) for m in model.modules() for t in tables)


@pytest.mark.parametrize(
    ("method", "options"),
    [(m, {}) for m in CAM_METHODS]
    + [(m, {"aug_smooth": True}) for m in ("gradcam", "smoothgradcam++", "fullgrad")]
    + [(m, {"eigen_smooth": True}) for m in ("gradcam++", "ablationcam", "sscam", "fullgrad")],
)
def test_no_side_effects_in_train_mode(tiny, images, method, options):
    tiny.train()
    tiny.features[0].eval()  # mixed flags must come back exactly
    with torch.enable_grad():
        tiny(images).sum().backward()  # a training step left grads behind ...
    tiny.features[0].bias.grad = None  # ... and one parameter without
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in tiny.named_parameters()}
    flags = [m.training for m in tiny.modules()]
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    rng = torch.get_rng_state()

    compute_cam(tiny, images, method, targets=2, closed_form=False, **options)

    for name, param in tiny.named_parameters():
        before = grads[name]
        assert (param.grad is None) if before is None else torch.equal(param.grad, before), name
    assert [m.training for m in tiny.modules()] == flags
    for key, value in tiny.state_dict().items():  # BN running stats, counters, weights
        assert torch.equal(value, state[key]), key
    assert torch.equal(torch.get_rng_state(), rng)
    assert _hooks(tiny) == 0


def test_rng_restored_even_if_model_draws(images):
    class Noisy(nn.Module):  # a model that consumes random numbers even in eval mode
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.features(x) + 0.01 * torch.rand(1)
            return self.fc(f.mean((2, 3)))

    model = Noisy()
    rng = torch.get_rng_state()
    for method in ("gradcam", "smoothgradcam++", "sscam"):  # the last two draw noise too
        compute_cam(model, images, method)
        assert torch.equal(torch.get_rng_state(), rng), method


def test_error_inside_call_restores_everything(tiny, images):
    tiny.train()
    with pytest.raises(Exception, match="out of range"):
        compute_cam(tiny, images, "gradcam", targets=torch.tensor([0, 1, 99]))
    assert tiny.training and all(m.training for m in tiny.modules())
    assert _hooks(tiny) == 0 and torch.is_grad_enabled()


def test_hundred_calls_leak_nothing(tiny, images):
    def tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    for method in ("gradcam", "cam"):
        compute_cam(tiny, images, method)  # warm-up: lazily created module state
    before = tensors()
    for i in range(100):
        out = compute_cam(tiny, images, "gradcam" if i % 2 else "gradcam++", closed_form=False)
    del out
    assert tensors() <= before
    assert _hooks(tiny) == 0
    # Methods that hook many layers, keep a full graph or re-run the model.
    for method in ("fullgrad", "ablationcam", "smoothgradcam++"):
        compute_cam(tiny, images, method, closed_form=False)
    before = tensors()
    for i in range(30):
        out = compute_cam(tiny, images, ("fullgrad", "ablationcam", "smoothgradcam++")[i % 3])
    del out
    assert tensors() <= before
    assert _hooks(tiny) == 0


@pytest.mark.parametrize(
    "method",
    ["gradcam", "layercam", "cam", "scorecam", "ablationcam", "eigengradcam", "fullgrad"]
    + ["smoothgradcam++", "sscam", "iscam"],
)
def test_same_result_under_inference_mode_and_no_grad(tiny, images, method):
    # The noisy methods too: the RNG is restored after each call, so all three draw the same.
    expected = compute_cam(tiny, images, method, closed_form=False)
    with torch.inference_mode():
        frozen = images.clone()  # an inference tensor, as in Lightning's validation loop
        got = compute_cam(tiny, frozen, method, closed_form=False)
        assert torch.is_inference_mode_enabled()
    torch.testing.assert_close(got, expected)
    with torch.no_grad():
        torch.testing.assert_close(compute_cam(tiny, images, method, closed_form=False), expected)
        assert not torch.is_grad_enabled()


def test_ddp_wrapped_model_runs_no_collectives(tiny, images, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        tiny.train()
        ddp = nn.parallel.DistributedDataParallel(tiny)
        expected = compute_cam(tiny, images, "gradcam", closed_form=False)
        for method in [*BACKWARD_METHODS, "ablationcam"]:
            got = compute_cam(ddp, images, method, closed_form=False)
            if method == "gradcam":
                torch.testing.assert_close(got, expected)
        assert all(p.grad is None for p in tiny.parameters())
        # DDP's reducer would raise here if a CAM call had left a reduction half done.
        for _ in range(2):
            ddp(images).sum().backward()
        assert all(p.grad is not None for p in tiny.parameters())
    finally:
        dist.destroy_process_group()


def test_vit_in_train_mode_untouched():
    # Dropout active in train mode: the call must run in eval mode (same maps as an eval-mode
    # call) and give the flags, hooks and grads back.
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(32, 16, 2, 2, 32, 64, dropout=0.5, attention_dropout=0.5)
    with torch.no_grad():
        vit.heads.head.weight.normal_()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    vit.eval()
    expected = {m: compute_cam(vit, x, m, closed_form=False) for m in ("gradcam", "ablationcam")}
    vit.train()
    for method, maps in expected.items():
        torch.testing.assert_close(compute_cam(vit, x, method, closed_form=False), maps)
    assert all(m.training for m in vit.modules()) and _hooks(vit) == 0
    assert all(p.grad is None for p in vit.parameters())

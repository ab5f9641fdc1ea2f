"""compute_cam inside Lightning's validation loop (which runs under torch.inference_mode)."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from camlab.cam import cam_from_features, compute_cam
from camlab.models.backbones import build_gapnet


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = build_gapnet("resnet18", num_classes=3)
        self.cams: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        assert not torch.is_grad_enabled()
        self.modes.append(torch.is_inference_mode_enabled())
        logits, feats = self.net.forward_with_features(x)
        cheap = cam_from_features(feats, self.net.classifier.weight, y)  # reuses this forward
        exact = compute_cam(self, x, "gradcam", targets=y, closed_form=False)
        hw = cheap.shape[-1] * cheap.shape[-2]
        torch.testing.assert_close(exact, cheap.relu() / hw, rtol=1e-4, atol=1e-6)
        self.cams.append(exact)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_gradcam_in_validation_loop(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 1]))
    module = _Module()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, default_root_dir=tmp_path,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader(data, batch_size=2)
    trainer.fit(module, loader, loader)  # validation under no_grad
    assert module.training  # Lightning's train mode is back after validation
    trainer.validate(module, loader, verbose=False)  # under inference_mode
    assert len(module.cams) == 4 and module.cams[0].shape == (2, 2, 2)
    assert True in module.modes

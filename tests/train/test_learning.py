"""A real learning test: the embedded real digits, a small budget, accuracy far above chance."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from camlab.cam import compute_cam
from camlab.classifier import GAPClassifier
from camlab.data import MNISTLocDataModule
from camlab.train import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_resnet18_learns_embedded_digits(tmp_path):
    overrides = [
        f"paths.output_dir={tmp_path}", "data.num_workers=0", "data.canvas_size=56",
        "data.scale_range=[1.0,1.5]", "data.batch_size=32", "trainer.accelerator=cpu",
        "trainer.max_epochs=1", "~callbacks.rich_progress_bar",
        "~callbacks.cam_panel",
        "~callbacks.val_localization", "test=false", "seed=0",
    ]  # fmt: skip
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    best_val_acc = train(cfg)
    print(f"best val/acc {best_val_acc:.1f}%")
    # 1 epoch of 3,500 digits in batches of 32 (110 optimizer steps) from scratch: measured
    # 73.2% / 69.4% / 75.0% best val accuracy under ATEN_CPU_CAPABILITY avx512 / default / avx2
    # (seed 0, 1 torch thread; val/acc is in percent); chance is 10%. 80 steps were not enough
    # on every kernel (39.6% under default).
    assert best_val_acc > 60
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["value"] == pytest.approx(best_val_acc)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()

    # The overlay means something: the trained CAM's mass concentrates on the digit's box.
    model = GAPClassifier.load_from_checkpoint(saved["best_checkpoint"]).eval()
    dm = MNISTLocDataModule(canvas_size=56, scale_range=(1.0, 1.5), num_workers=0)
    batch = next(iter(torch.utils.data.DataLoader(dm.dataset("val"), batch_size=200)))
    cams = compute_cam(model, batch["image"], "cam", targets=batch["label"], output_size=56)
    cams = cams.clamp(min=0)
    inside = torch.zeros_like(cams, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(batch["box"][:, 0].tolist()):
        inside[i, y0 : y1 + 1, x0 : x1 + 1] = True
    mass_in_box = ((cams * inside).sum() / cams.sum()).item()
    box_area = inside.float().mean().item()
    peak = cams.flatten(1).argmax(1)
    pointing = inside.flatten(1)[torch.arange(len(peak)), peak].float().mean().item()
    print(f"CAM mass in box {mass_in_box:.3f}, box area {box_area:.3f}, peak in box {pointing:.3f}")
    # Measured (seed 0, 4x4 CAMs of 56 px canvases, 1 torch thread; avx512 / default / avx2):
    # the CAM's peak lies inside the digit's box for 0.81 / 0.85 / 0.815 of the images
    # (pointing game), and 0.28 / 0.27 / 0.28 of the positive CAM mass lies in boxes covering
    # 0.16 of the pixels (1.7x uniform). More than half of this last-layer CAM's mass in the box
    # is out of reach: one 4x4 cell spans 14 px, a digit 28-42.
    assert pointing > 0.75
    assert mass_in_box > 1.4 * box_area
    # At a finer layer the map can be as sharp as the digit: LayerCAM (made for shallow layers)
    # at layer1 (stride 4: 14x14 maps) of the same model puts most of its mass in the box.
    # Measured: 0.62 / 0.64 / 0.61 of the mass in the 0.16 of the pixels (3.8x uniform).
    fine = compute_cam(
        model, batch["image"], "layercam", targets=batch["label"],
        target_layer="net.features.backbone.layer1", output_size=56,
    )  # fmt: skip
    assert fine.shape == (200, 56, 56) and fine.min() >= 0
    fine_mass = ((fine * inside).sum() / fine.sum()).item()
    print(f"LayerCAM at layer1: mass in box {fine_mass:.3f}")
    assert fine_mass > 0.5

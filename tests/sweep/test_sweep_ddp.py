"""2-process CPU DDP through ``python train.py -m``: one directory per job, written once, and the
same validation metrics as one process."""

import csv

import matplotlib.image
import pytest
import torch
from sweep_helpers import job_dirs, metrics, run_summarize, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

VAL = ("val/loss", "val/acc", "val/max_box_acc_v2", "val/max_box_acc", "val/top1_loc")


def scalars(job, tag):
    acc = EventAccumulator(str(job / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    return acc, [(e.step, e.value) for e in acc.Scalars(tag)]


def weights(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_ddp_multirun_matches_one_process(tmp_path):
    """Two lrs, each trained by 2 DDP processes (per-device batch 8) and by 1 (batch 16).

    Equality holds by construction, not by luck (experiment=ddp_equal): both runs use
    strategy=ddp, so both draw batches from a DistributedSampler with the same seed; with
    world size 2 rank r takes permutation[r::2], so the two ranks' k-th batches of 8 together
    are exactly the 1-process k-th batch of 16, and DDP's gradient average over the ranks
    equals the 1-process batch mean. Training images are fixed per index (the stock training
    split draws them from each process's RNG), squeezenet has no BatchNorm (per-process batch
    statistics without SyncBatchNorm, which the CPU lacks), and SGD does not magnify float noise
    the way Adam's normalisation does near zero gradients. 32 train and 32 val images: no
    DistributedSampler padding (duplicates would change the metrics). What remains is the
    summation order of the gradient all-reduce: weights agree to ~1e-7, validation metrics
    (torchmetrics states and sync_dist means, synced over the ranks) to float precision.
    """
    common = [
        "-m", "experiment=ddp_equal", f"paths.log_dir={tmp_path}", "model.optimizer.lr=0.01,0.05",
    ]  # fmt: skip
    one = run_train(*common, "trainer.devices=1", "data.batch_size=16",
                    f"hydra.sweep.dir={tmp_path / 'one'}")  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_train(*common, "trainer.devices=2", "data.batch_size=8",
                    f"hydra.sweep.dir={tmp_path / 'two'}")  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]

    # Rank 1 re-ran this job alone, in this job's directory: no second sweep, no stray run dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    jobs = job_dirs(tmp_path / "two")
    assert [j.name for j in jobs] == [
        "0_data.batch_size=8,model.optimizer.lr=0.01,trainer.devices=2",
        "1_data.batch_size=8,model.optimizer.lr=0.05,trainer.devices=2",
    ]
    for job, ref in zip(jobs, job_dirs(tmp_path / "one"), strict=True):
        ckpts = ["epoch_000.ckpt", "epoch_001.ckpt", "last.ckpt"]
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ckpts
        assert len(list((job / "tensorboard").glob("events.out.tfevents.*"))) == 1
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran for this job
        acc, _ = scalars(job, "val/loss")
        for method in ("cam", "gradcam"):  # panels from rank 0 only, once per epoch, at step 0
            # and at the step of each epoch's validation scalars
            cards = [t for t in acc.Tags()["images"] if t.startswith(f"cam/{method}")]
            assert cards and all([e.step for e in acc.Images(t)] == [0, 1, 3] for t in cards)

        got, want = metrics(job)["metrics"], metrics(ref)["metrics"]
        assert metrics(job)["value"] == pytest.approx(metrics(ref)["value"], abs=1e-6)
        for name in VAL:
            # val/loss: a float32 sum over the two ranks' shares, added in another order.
            rel = 5e-5 if name == "val/loss" else 1e-5
            assert got[name] == pytest.approx(want[name], rel=rel, abs=1e-6), name
            # every epoch, not only the last
            _, per_epoch = scalars(job, name)
            _, ref_epoch = scalars(ref, name)
            assert [s for s, _ in per_epoch] == [s for s, _ in ref_epoch] == [1, 3]
            assert [v for _, v in per_epoch] == pytest.approx([v for _, v in ref_epoch], rel=rel)
        for epoch in (0, 1):
            name = f"checkpoints/epoch_{epoch:03d}.ckpt"
            a, b = weights(job / name), weights(ref / name)
            # float32 rounding of the all-reduced gradients, compounded over the steps:
            # measured 1e-5 to 2e-5 after 2 epochs (depends on the threads and the load)
            assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4

    # Nothing but the jobs and Hydra's record in the sweep directory; then summarize.py's
    # table, CSV and plot of the jobs, best first.
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == [j.name for j in jobs] + ["multirun.yaml"]
    out = run_summarize(tmp_path / "two")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| job | status |" in out.stdout and "model.optimizer.lr" in out.stdout
    with open(tmp_path / "two" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["job"] for r in rows) == [j.name for j in jobs]
    assert {r["model.optimizer.lr"] for r in rows} == {"0.01", "0.05"}
    values = [float(r["val/acc"]) for r in rows]  # the optimized metric
    assert values == sorted(values, reverse=True)
    assert (tmp_path / "two" / "summary.md").read_text().count("\n| ") == 2 + 1  # header + jobs
    assert matplotlib.image.imread(tmp_path / "two" / "summary.png").ndim == 3

"""Suite-wide settings: one torch thread per pytest-xdist worker.

The suite runs in two workers (pyproject's addopts); with torch's default of one thread per core
each, the two would oversubscribe the cores and wait on each other's threads at every operator.
Subprocesses (train.py, evaluate.py, DDP ranks) inherit OMP_NUM_THREADS.
"""

import os

import torch


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# The slowest files first, longest first (measured with --durations; one xdist worker runs a
# whole file): with pyproject's --no-loadscope-reorder, xdist hands files out in this order, so
# no long file starts last while the other worker idles.
LONGEST_FIRST = [
    "evaluation/test_evaluate.py",
    "train/test_learning.py",
    "search/test_search_end_to_end.py",
    "sweep/test_sweep_ddp.py",
    "methods/test_method_learning.py",
    "train/test_cli.py",
    "evaluation/test_baselines.py",
    "models/test_reference_networks.py",
    "evaluation/test_sanity.py",
    "models/test_timm.py",
    "callbacks/test_cam_panel.py",
    "callbacks/test_callbacks_ddp.py",
    "metrics/test_maxtree.py",
    "sweep/test_sweeps.py",
    "metrics/test_boxes_exact.py",
    "train/test_resume.py",
    "cam/test_models.py",
    "train/test_reliability.py",
    "train/test_untrusted.py",
    "train/test_gap_models.py",
]


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: files stay whole, the others keep their order

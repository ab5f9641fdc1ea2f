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

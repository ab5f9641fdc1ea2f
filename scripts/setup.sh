#!/usr/bin/env bash
# Creates .venv (if missing) and installs camlab with its test, sweep and benchmark extras,
# pinned by constraints.txt to the torch/torchvision builds known to work on the CPU machines.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -qq -c constraints.txt -e ".[dev,sweep,bench]"
# The peer the Quantus-parity tests and benchmark compare against. Without --no-deps pip would add
# opencv-python, whose GUI build of cv2 overwrites the headless one (and needs libGL); the bench
# extra above holds its other requirements.
.venv/bin/pip install -qq --no-deps quantus==0.6.0

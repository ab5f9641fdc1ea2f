#!/usr/bin/env python
"""``python evaluate.py ckpt_path=<ckpt> [data=...] [split=test]`` (configs/eval.yaml)."""

from camlab.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()

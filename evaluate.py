#!/usr/bin/env python
"""``python evaluate.py ckpt_path=<ckpt> [data=...] [split=test]`` (configs/eval.yaml)."""

from camlab.evaluate import main

if __name__ == "__main__":
    main()

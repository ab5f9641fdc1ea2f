"""``python train.py model=resnet34 data=mnist``: see configs/train.yaml and the README."""

from camlab.cli import train_main

if __name__ == "__main__":
    train_main()

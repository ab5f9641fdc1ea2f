"""``python train.py model=resnet34 data=mnist``: see configs/train.yaml and the README."""

from camlab.train import main

if __name__ == "__main__":
    main()

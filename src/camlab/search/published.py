"""The published main table of Choe et al. (TPAMI 2022 / arXiv 2001.07437 latest), as the
reference repository shows it (clovaai/wsolevaluation, README section 5, ``main_table.png``):
test MaxBoxAccV2 (ImageNet, CUB) and PxAP (OpenImages), last checkpoint of the trial selected on
train-fullsup, on the reference's networks.

The table prints CAM's value and every other method's difference to it; a method's value here
is CAM's plus that difference, so it can be 0.1 off the unrounded number (CUB ResNet50 ACoL:
63.0 + 3.5 = 66.5, where the table's "Best WSOL" row says 66.4).
"""

from __future__ import annotations

DATASETS = ("imagenet", "cub", "openimages")
BACKBONES = ("vgg16", "inception_v3", "resnet50")
METRIC = {"imagenet": "max_box_acc_v2", "cub": "max_box_acc_v2", "openimages": "pxap"}

# (dataset, backbone) -> CAM's value.
CAM = {
    ("imagenet", "vgg16"): 60.0, ("imagenet", "inception_v3"): 63.4,
    ("imagenet", "resnet50"): 63.7,
    ("cub", "vgg16"): 63.7, ("cub", "inception_v3"): 56.7, ("cub", "resnet50"): 63.0,
    ("openimages", "vgg16"): 58.3, ("openimages", "inception_v3"): 63.2,
    ("openimages", "resnet50"): 58.5,
}  # fmt: skip
# method -> differences to CAM, in the order DATASETS x BACKBONES.
DELTAS = {
    "has": (0.6, 0.3, -0.3, 0.0, -3.3, 1.7, -0.2, -5.1, -2.6),
    "acol": (-2.6, 0.3, -1.4, -6.3, -0.5, 3.5, -4.0, -6.0, -1.2),
    "spg": (-0.1, -0.1, -0.4, -7.4, -0.8, -2.6, 0.0, -0.9, -1.8),
    "adl": (-0.2, -2.0, 0.0, 2.6, 2.1, -4.6, 0.4, -6.4, -3.3),
    "cutmix": (-0.6, 0.5, -0.4, -1.4, 0.8, -0.2, -0.2, -0.7, -0.8),
}
# The sanity rows, printed as values: the few-shot (FSL) and centre-Gaussian baselines.
BASELINES = {
    "fullsup": (60.3, 65.3, 66.3, 71.6, 86.6, 82.4, 65.9, 74.1, 74.4),
    "center": (52.5, 52.5, 52.5, 59.7, 59.7, 59.7, 45.8, 45.8, 45.8),
}
COLUMNS = [(d, b) for d in DATASETS for b in BACKBONES]


def published(row: str, dataset: str, backbone: str) -> float | None:
    """The published value of a row (method, ``fullsup`` or ``center``) in a column, or None
    where the paper has no such column (another data set or backbone)."""
    column = (dataset, backbone)
    if column not in CAM:
        return None
    if row == "cam":
        return CAM[column]
    index = COLUMNS.index(column)
    if row in DELTAS:
        return round(CAM[column] + DELTAS[row][index], 1)
    if row in BASELINES:
        return BASELINES[row][index]
    return None

"""Faithfulness of saliency maps: does the classifier's score follow what the map calls important?

Four families, each a ``torchmetrics.Metric`` (sum states, synced across DDP ranks) over
batched torch on the images' device:

- ``AverageDropIncrease`` (``confidence``): Average Drop % and % Increase in Confidence
  (Grad-CAM++), the class score on ``image * map`` against the score on ``image``.
- ``DeletionInsertion`` (``deletion``): RISE's deletion and insertion games, the area under the
  class score while the most salient pixels are deleted or inserted.
- ``ROAD`` (``road``, solver in ``imputation``): RemOve And Debias, the score change after the
  most / least relevant pixels are replaced by noisy linear imputation.
- ``PointingGame`` (``pointing``): a hit when the map's maximum lies within ``tolerance``
  pixels of the ground truth (boxes or a mask).

``FaithfulnessMetrics`` (``combined``) runs them all; ``scores`` holds the class scores they
share. Saliency maps are ``[N, H, W]`` at the images' resolution; Average Drop multiplies the
image by the map, so maps should lie in [0, 1] (min-max normalised, as ``cams_to_scoremaps``
and both peer libraries produce them).
"""

from camlab.metrics.faithfulness.combined import FaithfulnessMetrics
from camlab.metrics.faithfulness.confidence import AverageDropIncrease, confidence_scores
from camlab.metrics.faithfulness.deletion import (
    DeletionInsertion,
    deletion_insertion_curves,
    perturbation_counts,
    rise_blur,
    rise_blur_kernel,
)
from camlab.metrics.faithfulness.imputation import noisy_linear_impute
from camlab.metrics.faithfulness.pointing import PointingGame, pointing_hits, saliency_peaks
from camlab.metrics.faithfulness.road import ROAD, road_keep_masks, road_scores
from camlab.metrics.faithfulness.road import _numpy_percentile as _numpy_percentile
from camlab.metrics.faithfulness.scores import (
    BASELINES,
    ROAD_PERCENTILES,
    SCORES,
    class_scores,
    select_scores,
)

__all__ = [
    "BASELINES",
    "ROAD",
    "ROAD_PERCENTILES",
    "SCORES",
    "AverageDropIncrease",
    "DeletionInsertion",
    "FaithfulnessMetrics",
    "PointingGame",
    "class_scores",
    "confidence_scores",
    "deletion_insertion_curves",
    "noisy_linear_impute",
    "perturbation_counts",
    "pointing_hits",
    "rise_blur",
    "rise_blur_kernel",
    "road_keep_masks",
    "road_scores",
    "saliency_peaks",
    "select_scores",
]

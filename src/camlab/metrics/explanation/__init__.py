"""Explanation metrics equal to Quantus 0.6.0's (Hedström et al., JMLR 2023), batched in torch.

Quantus scores one image at a time in NumPy; these functions take a batch of images and their
saliency maps and run the perturbed forwards (or re-explanations) stacked. Each returns the
per-image scores Quantus returns for the same call (``tests/metrics/explanation`` checks that
against the installed package); random metrics draw from ``np.random.RandomState(seed)`` in
Quantus's order, so ``np.random.seed(s)`` before Quantus gives the same draws.

Families (Quantus's categories), one module each: ``localisation`` (relevance mass / rank
accuracy, top-k intersection, attribution localisation, AUC), ``correlation`` and
``perturbation`` and ``irof`` (faithfulness), ``robustness`` (max / average sensitivity, local
Lipschitz estimate), ``complexity`` (sparseness, complexity), ``randomisation`` (MPRT, random
logit). ``ExplanationMetrics`` accumulates any of them over batches and DDP ranks.
"""

from camlab.metrics.explanation.base import Spec, quantus_preprocess
from camlab.metrics.explanation.combined import ExplanationMetrics, all_specs, resolve

__all__ = ["ExplanationMetrics", "Spec", "all_specs", "quantus_preprocess", "resolve"]

"""Stage `sharpness`: the Hessian spectrum of each model's loss on clean and shifted images.

``run_sharpness`` (:mod:`robusteval.sharpness.stage`) writes one :class:`SharpnessRecord`
(:mod:`robusteval.sharpness.record`) per (model, set, severity, parameter group) to
``runs/<NAME>/sharpness.jsonl``; the report gains a Sharpness section
(``robusteval/report/sharpness_section.py``).

Library choice (compared when the stage was written; curvlinops is the optional extra ``sharpness``):

- **curvlinops-for-pytorch** (chosen, 3.x): maintained, tested against exact curvature matrices;
  Hessian as a linear operator over a whole data set (mean normalised over batches, parameter
  blocks), exported as a SciPy ``LinearOperator`` so Lanczos is SciPy's ARPACK ``eigsh``; trace
  estimators (Hutchinson, Hutch++, XTrace) and Papyan's stochastic Lanczos quadrature.
- **pyhessian** (0.1, 2021, the algorithm most papers cite): unmaintained since its one release,
  GPL-3.0 (robusteval is Apache-2.0), power iteration with a fixed iteration count and no
  residuals, no parameter groups (users ask for per-layer Hessians in its tracker).
- **hessian-eigenthings**: the 0.0.x API is years old; the 1.0 line is alpha pre-releases whose
  API was just replaced — not something to pin a stage on yet.

Two things we write ourselves, as glue: the mini-batch Hessian product by double backward
(curvlinops' own uses ``torch.func`` transforms, which reject our models' in-place ops), and the
Hutchinson loop that keeps per-probe values for a standard error (curvlinops returns only the mean).
Nothing is imported here: ``import robusteval.sharpness`` stays cheap for the report.
"""

"""What is explained, as objects: ``limelight.explain(..., targets=...)``.

* :class:`Class` ``(k)``: a class (an int, or one per sample); ``Class(3)`` is ``targets=3``.
* :class:`Region` ``(class_, mask)``: a class's dense scores summed over a mask
  (segmentation; pytorch-grad-cam's ``SemanticSegmentationTarget``).
* :class:`Function` ``(fn)``: any score ``fn(xp, outputs) -> (N,)`` or ``(N, T)`` written in
  the Array API (regression, binary margins, ...).
* :class:`Similarity` ``(embedding)``: cosine similarity of an embedding output to a
  reference.

Every one is a :class:`Target` whose ``scores`` run in every backend, on the model's
device, inside its (compiled) gradient function. See ``docs/targets.md``.

>>> from limelight import targets as T
>>> limelight.explain(model, x, "shap-gradient", background=bg,
...                   targets=T.Function(lambda xp, out: out[:, 0] - out[:, 1]))  # doctest: +SKIP
"""

from __future__ import annotations

from .core.targets import Class, Classes, Function, Predicted, Region, Similarity, Target

__all__ = ["Class", "Region", "Function", "Similarity", "Target", "Classes", "Predicted"]

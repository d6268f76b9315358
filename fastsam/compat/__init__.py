"""Drop-in APIs for code written against the original FastSAM repository and against Ultralytics' FastSAM.

``fastsam.compat.original``: ``FastSAM`` and ``FastSAMPrompt`` (``from fastsam import FastSAM, FastSAMPrompt``);
``fastsam.compat.ultralytics``: ``FastSAM`` and ``FastSAMPredictor`` with Ultralytics' prompt rules;
``fastsam.compat.results``: the ``Results`` / ``Boxes`` / ``Masks`` views both return. NumPy images given to
these APIs are BGR, as in both originals (fastsam's own API takes RGB).
"""

from fastsam.compat.original import FastSAMPrompt
from fastsam.compat.results import Boxes, Masks, Results
from fastsam.compat.ultralytics import FastSAM, FastSAMPredictor

__all__ = ["FastSAM", "FastSAMPrompt", "FastSAMPredictor", "Results", "Boxes", "Masks"]

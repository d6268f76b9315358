"""fastsam: Fast Segment Anything (FastSAM) in pure PyTorch."""

from fastsam.errors import (
    CheckpointError,
    FastSAMError,
    ImageReadError,
    InvalidInputError,
    ModelNotFoundError,
    UnsafeCheckpointError,
)
from fastsam.inference.predictor import Predictor
from fastsam.prompts.selection import Selection
from fastsam.result import SegmentationResult
from fastsam.rle import RunLengthMask

__version__ = "0.1.0"

#: The drop-in classes of fastsam.compat, imported on first use (they pull in OpenCV drawing and CLIP glue).
_COMPAT = {"FastSAM", "FastSAMPrompt", "FastSAMPredictor"}


def __getattr__(name: str) -> object:
    if name in _COMPAT:
        import fastsam.compat

        return getattr(fastsam.compat, name)
    raise AttributeError(f"module 'fastsam' has no attribute {name!r}")


__all__ = [
    "CheckpointError", "FastSAMError", "ImageReadError", "InvalidInputError", "ModelNotFoundError",
    "UnsafeCheckpointError", "Predictor", "Selection", "SegmentationResult", "RunLengthMask", "__version__",
    "FastSAM", "FastSAMPrompt", "FastSAMPredictor",
]

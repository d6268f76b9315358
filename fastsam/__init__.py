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

__all__ = [
    "CheckpointError", "FastSAMError", "ImageReadError", "InvalidInputError", "ModelNotFoundError",
    "UnsafeCheckpointError", "Predictor", "Selection", "SegmentationResult", "RunLengthMask", "__version__",
]

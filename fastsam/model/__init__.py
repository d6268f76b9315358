"""The YOLOv8-seg network behind FastSAM, its checkpoints and the model zoo."""

from fastsam.model.checkpoint import load_weights, save_native
from fastsam.model.config import YoloV8SegConfig
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.model.zoo import MODELS, cache_dir, convert_checkpoint, download, load_model, resolve_weights

__all__ = [
    "MODELS", "YoloV8Seg", "YoloV8SegConfig", "cache_dir", "convert_checkpoint", "download", "load_model",
    "load_weights", "resolve_weights", "save_native",
]

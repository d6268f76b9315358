"""Training FastSAM's YOLOv8-seg network: task-aligned assignment, the segmentation loss, the trainer (from
scratch or fine-tuning, resumable, DDP) and class-agnostic COCO validation. Datasets live in
:mod:`fastsam.train.data`."""

from fastsam.train.assigner import TaskAlignedAssigner, box_ciou
from fastsam.train.losses import LossGains, SegmentationLoss
from fastsam.train.trainer import TrainConfig, Trainer
from fastsam.train.validate import score_results, validate, validate_checkpoint

__all__ = [
    "LossGains", "SegmentationLoss", "TaskAlignedAssigner", "TrainConfig", "Trainer", "box_ciou", "score_results",
    "validate", "validate_checkpoint",
]

"""Training data: readers of YOLO-seg, COCO, BSDS500 and SA-1B (class-agnostic), the YOLOv8 augmentations,
the training dataset and batch collation, COCO ground truth for validation, and the SA-1B converter."""

from fastsam.train.data.augment import AugmentConfig
from fastsam.train.data.bsds import BsdsSource
from fastsam.train.data.coco import CocoSource
from fastsam.train.data.dataset import TrainingDataset, collate_batch
from fastsam.train.data.ground_truth import coco_ground_truth
from fastsam.train.data.sa1b import Sa1bSource
from fastsam.train.data.sample import Annotations, ConcatSource, InstanceSource, Sample
from fastsam.train.data.sources import open_source, open_sources
from fastsam.train.data.yolo import YoloSegSource

__all__ = [
    "Annotations", "AugmentConfig", "BsdsSource", "CocoSource", "ConcatSource", "InstanceSource", "Sa1bSource",
    "Sample", "TrainingDataset", "YoloSegSource", "coco_ground_truth", "collate_batch", "open_source",
    "open_sources",
]

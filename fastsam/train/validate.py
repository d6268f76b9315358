"""Class-agnostic validation: run the predictor over a source's images and score boxes and masks with COCOeval.

Metrics (floats in [0, 1], -1 where COCOeval has nothing to average): ``box/AP``, ``box/AP50``, ``box/AP75``,
``box/AR@100``, ``box/AR@1000`` and the same under ``mask/``. Ground truth comes from
:func:`fastsam.train.data.coco_ground_truth` (crowd regions, where the source has them, are ignored).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from fastsam.errors import InvalidInputError
from fastsam.model.yolov8_seg import YoloV8Seg

REPORTED = ("AP", "AP50", "AP75", "AR@100", "AR@1000")
IOU_TYPES = {"box": "bbox", "mask": "segm"}


def validate(model: YoloV8Seg, source: Any, imgsz: int = 640, conf: float = 0.001, iou: float = 0.7,
             max_det: int = 300, device: str = "cpu", retina: bool = False, limit: int | None = None,
             progress: bool = True) -> dict[str, float]:
    """Box and mask AP / AR of ``model`` on the first ``limit`` (default all) images of ``source`` (an
    InstanceSource). The model is copied, never changed (the predictor fuses batch norms in place).
    ``retina`` False scores masks upsampled from the network input, as YOLOv8's validator does (faster)."""
    from fastsam.inference.predictor import Predictor
    from fastsam.train.data import coco_ground_truth

    count = len(source) if limit is None else min(int(limit), len(source))
    if count < 1:
        raise InvalidInputError(f"validation source {getattr(source, 'name', source)!r} has no images")
    predictor = Predictor(copy.deepcopy(model).float(), device=device, imgsz=imgsz, conf=conf, iou=iou,
                          max_det=max_det, retina=retina)
    results = (predictor(source.image_path(i), keep_image=False) for i in range(count))
    bar = tqdm(results, total=count, desc="val", unit="image", disable=not progress, file=sys.stderr, leave=False)
    return score_results(coco_ground_truth(source), enumerate(bar, start=1), limit=count)


def score_results(ground_truth: dict, results: Iterable[tuple[int, Any]], limit: int | None = None
                  ) -> dict[str, float]:
    """Box and mask metrics of ``(image_id, SegmentationResult)`` pairs against a COCO instances document;
    with ``limit``, only images 1..limit are scored (images without a result count as misses)."""
    from fastsam.eval.coco import evaluate_coco, result_to_detections

    detections: list[dict] = []
    for image_id, result in results:
        detections.extend(result_to_detections(result, image_id=image_id, with_masks=True))
    image_ids = None if limit is None else list(range(1, limit + 1))
    metrics: dict[str, float] = {}
    for prefix, iou_type in IOU_TYPES.items():
        scores = evaluate_coco(ground_truth, detections, iou_type=iou_type, max_dets=(10, 100, 1000),
                               class_agnostic=True, image_ids=image_ids)
        metrics.update({f"{prefix}/{key}": float(scores[key]) for key in REPORTED})
    return metrics


def validate_checkpoint(model_path: str | Path, data: str | Path, kind: str | None = None,
                        split: str | None = None, **settings: Any) -> dict[str, float]:
    """:func:`validate` a checkpoint (anything ``load_model`` reads) on a dataset path (anything ``open_source``
    detects: YOLO-seg folder, COCO JSON, BSDS500, SA-1B; ``PATH:SPLIT`` names the split)."""
    from fastsam.model.zoo import load_model
    from fastsam.train.data import open_sources

    source = open_sources(data, kind=kind, split=split)  # first: a bad data path fails before any download
    return validate(load_model(model_path, progress=settings.get("progress", True)), source, **settings)

"""Zero-shot object proposals: every instance FastSAM finds ("everything" mode) is a class-agnostic proposal,
scored by its confidence; AR@10/100/1000 (boxes and masks, all / small / medium / large) on a COCO-format set.

Settings (the defaults): conf 0.001 and max_det 1000, so that up to 1000 proposals per image exist for AR@1000
(FastSAM's everything-mode conf 0.4 would cut recall at many proposals); NMS IoU 0.9 as FastSAM; imgsz 1024.
Box proposals are the detector's boxes, mask proposals its masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastsam.eval.coco import evaluate_coco, result_to_detections
from fastsam.eval.datasets import load_coco_set
from fastsam.eval.store import (ResultCache, Stopwatch, check_max_images, make_predictor, markdown_table,
                                model_name, run_cached, write_task_outputs)

TASK = "proposals"
MAX_DETS = (10, 100, 1000)


def run_proposals_benchmark(annotations: str | Path, out_dir: str | Path, *, model: Any,
                            images: str | Path | None = None, imgsz: int = 1024, conf: float = 0.001,
                            iou: float = 0.9, max_det: int = 1000, retina: bool = True, device: str = "cpu",
                            max_images: int | None = None, progress: bool = True) -> dict:
    """Run the proposals task; write ``out_dir/proposals.json`` and ``proposals.md`` and return the summary:
    ``{"task", "model", "settings", "images", "wall_s", "box": {metric: value}, "mask": {...}}`` with the
    metrics of :func:`fastsam.eval.coco.evaluate_coco` (AR@k, AR_small@k, ..., AP...)."""
    max_images = check_max_images(max_images)
    dataset = load_coco_set(annotations, images, max_images)
    settings = {"annotations": str(Path(annotations).resolve()), "model": model_name(model), "imgsz": imgsz,
                "conf": conf, "iou": iou, "max_det": max_det, "retina": retina}
    predictor = make_predictor(model, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina, device=device)
    cache = ResultCache(out_dir, TASK, settings)
    clock = Stopwatch()

    def propose(item: tuple[int, Path]) -> dict:
        image_id, path = item
        result = predictor(path, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina, keep_image=False)
        return {"image_id": image_id, "network_s": result.timings.get("network", 0.0),
                "detections": result_to_detections(result, image_id, with_masks=True)}

    records, computed = run_cached(dataset.images, lambda item: str(item[0]), propose, cache, progress, TASK)
    detections = [det for record in records for det in record["detections"]]
    image_ids = [image_id for image_id, _ in dataset.images]
    summary = {
        "task": TASK, "model": model_name(model), "settings": settings, "images": len(image_ids),
        "computed_images": computed, "wall_s": clock.seconds(),
        "proposals_per_image": len(detections) / max(len(image_ids), 1),
        "box": evaluate_coco(dataset.ground_truth, detections, "bbox", MAX_DETS, True, image_ids),
        "mask": evaluate_coco(dataset.ground_truth, detections, "segm", MAX_DETS, True, image_ids),
    }
    return write_task_outputs(out_dir, TASK, summary, proposals_markdown(summary))


def proposals_markdown(summary: dict) -> str:
    """The summary as a markdown table: one row per proposal kind, AR columns."""
    columns = [f"AR@{k}" for k in MAX_DETS] + [f"AR_{a}@{MAX_DETS[-1]}" for a in ("small", "medium", "large")]
    rows = [[kind] + [summary[kind].get(c) for c in columns] for kind in ("box", "mask")]
    return (f"# Object proposals ({summary['images']} images, model {summary['model']})\n\n"
            + markdown_table(["proposals"] + columns, rows)
            + f"\n{summary['proposals_per_image']:.1f} proposals per image; settings {summary['settings']}; "
              f"wall time {summary['wall_s']} s.\n")

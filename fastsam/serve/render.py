"""Selections as HTTP responses in each mask format (see :data:`fastsam.serve.schemas.FORMAT_HELP`).

Masks stay run-length encoded: RLE and COCO output never decode them, polygons decode one mask at a time inside
its box, and the PNG formats build one image-sized plane.
"""

from __future__ import annotations

import cv2
import numpy as np
from starlette.responses import JSONResponse, Response

from fastsam.io.export import coco_document, label_map, to_polygon_annotations
from fastsam.prompts.selection import Selection
from fastsam.serve.schemas import MaskFormat


def _png(plane: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", plane)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8/uint16 plane
        raise RuntimeError(f"cannot encode a {plane.dtype} plane as PNG")
    return encoded.tobytes()


def _masks_json(selection: Selection, image_id: str, fmt: MaskFormat) -> dict:
    h, w = selection.image_size
    boxes = selection.boxes.tolist()
    polygons = to_polygon_annotations(selection) if fmt == "polygons" else None
    masks = []
    for k, (mask, instance_id, prompt, score) in enumerate(
            zip(selection.masks, selection.instance_ids, selection.prompts, selection.scores)):
        item = {"score": float(score), "box": boxes[k], "area": int(mask.area),
                "instance_id": None if instance_id is None else int(instance_id), "prompt": prompt}
        if polygons is None:
            item["rle"] = mask.to_coco()
        else:
            item["polygons"] = polygons[k]["polygons"]
        masks.append(item)
    return {"image_id": image_id, "width": int(w), "height": int(h), "count": len(masks), "masks": masks}


def selection_response(selection: Selection, image_id: str, fmt: MaskFormat, file_name: str | None = None) -> Response:
    """The selection in format ``fmt``; PNG answers carry the count, best score and union box in headers."""
    if fmt in ("rle", "polygons"):
        return JSONResponse(_masks_json(selection, image_id, fmt))
    if fmt == "coco":
        return JSONResponse(coco_document(selection, file_name or f"{image_id[:16]}.png"))
    if fmt == "labels":
        labels = label_map(selection)
        return Response(_png(labels.astype(np.uint8) if len(selection) <= 255 else labels), media_type="image/png")
    union = selection.merged()
    x1, y1, x2, y2 = union.bbox()
    headers = {"X-FastSAM-Count": str(len(selection)), "X-FastSAM-Box": f"{x1},{y1},{x2},{y2}",
               "X-FastSAM-Score": f"{max(selection.scores):.6g}" if len(selection) else ""}
    plane = union.decode().astype(np.uint8) * np.uint8(255)
    return Response(_png(plane), media_type="image/png", headers=headers)

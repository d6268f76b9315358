"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI document)."""

from __future__ import annotations

import json
from typing import Literal, Optional

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MaskFormat = Literal["rle", "polygons", "coco", "png", "labels"]
FORMAT_HELP = ("rle: JSON, each mask as COCO compressed RLE; polygons: JSON, each mask as outer contours; "
               "coco: a COCO results document; png: the union of the masks as one 8-bit PNG (255 inside), with "
               "X-FastSAM-Score / X-FastSAM-Box / X-FastSAM-Count headers; labels: a label-map PNG (k for mask k, "
               "0 background; 16-bit above 255 masks)")


class PromptRequest(BaseModel):
    """Points, boxes and/or texts selecting masks of an uploaded image; at least one of them is needed (an empty
    ``texts`` list counts as none). Coordinates are image pixels."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["points"]}, {"required": ["boxes"]}, {"required": ["texts"]}]})

    points: Optional[list[tuple[float, float]]] = Field(None, description="(x, y) pixels", examples=[[[289, 185]]])
    labels: Optional[list[int]] = Field(None, description="1 foreground / 0 background, one per point (default 1)")
    per_point: bool = Field(False, description="one mask per foreground point instead of one merged mask")
    boxes: Optional[list[tuple[float, float, float, float]]] = Field(None, description="(x1, y1, x2, y2) pixels")
    texts: Optional[list[str]] = Field(None, description="descriptions scored with CLIP (needs --text-model)")
    text_mode: Optional[Literal["best", "topk", "threshold"]] = None
    text_top_k: Optional[int] = Field(None, ge=1)
    text_threshold: Optional[float] = None
    format: MaskFormat = Field("rle", description=FORMAT_HELP)


def parse_prompt(body: bytes) -> PromptRequest:
    """A prompt request from its JSON body; :class:`RequestValidationError` (422) when it is not one.

    NaN and infinities parse (the prompt checks refuse them with a clearer message than JSON syntax would).
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": f"the body is not valid JSON{where}"}]) from None
    try:
        return PromptRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False, include_input=False)]) from None


class RLE(BaseModel):
    size: tuple[int, int] = Field(description="(height, width)")
    counts: str = Field(description="COCO compressed counts, column-major")


class MaskOut(BaseModel):
    score: float
    box: tuple[float, float, float, float] = Field(description="tight mask box x1, y1, x2, y2 (max exclusive)")
    area: int = Field(description="pixels")
    instance_id: Optional[int] = Field(description="index in the all-instance result; null for a merged mask")
    prompt: str = Field(description="what selected it: 'everything', 'points', 'box 0', \"text 0: '...'\"")
    rle: Optional[RLE] = None
    polygons: Optional[list[list[float]]] = Field(None, description="flat x1, y1, x2, y2, ... outlines")


class MasksOut(BaseModel):
    image_id: str
    width: int
    height: int
    count: int
    masks: list[MaskOut]


class ImageOut(BaseModel):
    image_id: str = Field(description="SHA-256 of the uploaded bytes")
    width: int
    height: int
    instances: int = Field(description="instances found by the all-instance pass")
    reused: bool = Field(description="true when the result was cached (or being computed) already")
    seconds: float = Field(description="duration of the all-instance pass")
    nbytes: int = Field(description="estimated memory the cached result takes")


class HealthOut(BaseModel):
    status: Literal["ok"]
    queue: dict
    cache: dict


class ModelOut(BaseModel):
    name: str
    architecture: Optional[dict]
    imgsz: int
    conf: float
    iou: float
    max_det: int
    retina: bool
    device: str
    text_prompts: bool
    text_model: Optional[str]
    limits: dict


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Optional[list] = None


class ErrorOut(BaseModel):
    error: ErrorDetail

"""The FastAPI application: upload once, prompt many times, plus the web page.

``create_app(backend, settings, text_model)`` builds it around a :class:`~fastsam.inference.predictor.Predictor`
(or a model, or any callable bytes -> SegmentationResult, which is how tests inject a slow fake). All-instance
passes run in :class:`~fastsam.serve.worker.SegmentationWorker`; prompts on cached results run in the
request thread pool, so they never wait behind a pass. Every request first passes
:class:`~fastsam.serve.guard.RequestGuard` (Host, Origin, token, security headers); bodies are read with a size
limit and a deadline while they stream, and parsed off the event loop.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any, Callable, Optional, Union

import cv2
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fastsam.errors import FastSAMError, InvalidInputError
from fastsam.inference.predictor import Predictor
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.prompts.text import ImageTextScorer, resolve_scorer
from fastsam.result import SegmentationResult
from fastsam.serve import schemas
from fastsam.serve.cache import ResultCache
from fastsam.serve.errors import (ClientGoneError, FeatureUnavailableError, UnsupportedMediaTypeError, error_code,
                                  http_status)
from fastsam.serve.guard import RequestGuard, error_response
from fastsam.serve.render import selection_response
from fastsam.serve.settings import ServeSettings
from fastsam.serve.upload import check_image_header, read_limited, read_upload
from fastsam.serve.worker import SegmentationWorker

API = "/v1"
STATIC = resources.files("fastsam.serve") / "static"
IMAGE_ID = Path(pattern="^[0-9a-f]{64}$", description="SHA-256 of the uploaded bytes (from POST /v1/images)")
FORMAT = Query("rle", description=schemas.FORMAT_HELP)
FILE_NAME = Query(None, max_length=255, description="the image's file name in COCO output")
ERRORS = {status: {"model": schemas.ErrorOut} for status in (400, 401, 403, 404, 408, 413, 415, 422, 501, 503)}
PROMPT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": schemas.PromptRequest.model_json_schema()}}}}
logger = logging.getLogger("uvicorn.error")  # the server's log

Backend = Union[Predictor, YoloV8Seg, Callable[[bytes], SegmentationResult]]


def _public_name(name: str) -> str:
    """A model or text model name as clients see it: a zoo or hub id as is, a local file or folder by its last
    part only (its path would tell a remote client about this machine)."""
    return os.path.basename(os.path.normpath(name)) if os.path.isabs(name) or os.path.exists(name) else name


def _model_info(predictor: Any, settings: ServeSettings, text_model: ImageTextScorer | None) -> dict:
    cfg = getattr(getattr(predictor, "model", None), "cfg", None)
    return {
        "name": _public_name(settings.model_name),
        "architecture": asdict(cfg) if cfg is not None else None,
        "imgsz": int(getattr(predictor, "imgsz", 0)), "conf": float(getattr(predictor, "conf", 0.0)),
        "iou": float(getattr(predictor, "iou", 0.0)), "max_det": int(getattr(predictor, "max_det", 0)),
        "retina": bool(getattr(predictor, "retina", True)), "device": str(getattr(predictor, "device", "cpu")),
        "text_prompts": text_model is not None,
        "text_model": None if text_model is None
        else _public_name(str(getattr(text_model, "source", None) or type(text_model).__name__)),
        "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                   "max_prompt_bytes": settings.max_prompt_bytes,
                   "max_prompts": settings.max_prompts, "cache_bytes": settings.cache_bytes,
                   "workers": settings.workers, "queue_size": settings.queue_size},
    }


def _check_prompt_sizes(request: schemas.PromptRequest, settings: ServeSettings) -> None:
    for name in ("points", "labels", "boxes", "texts"):
        values = getattr(request, name)
        if values is not None and len(values) > settings.max_prompts:
            raise InvalidInputError(f"{len(values)} {name} in one request; at most {settings.max_prompts}")


def create_app(backend: Backend, settings: ServeSettings | None = None,
               text_model: ImageTextScorer | str | os.PathLike | None = None) -> FastAPI:
    """The HTTP API and web page around ``backend``.

    backend: a Predictor, a YoloV8Seg (wrapped in a default Predictor) or a callable image bytes ->
    SegmentationResult. text_model: a scorer object, CLIP folder or model id enabling text prompts (loaded now,
    so that a missing model fails at start-up rather than on the first prompt); None disables them.
    """
    settings = settings or ServeSettings()
    if isinstance(backend, YoloV8Seg):
        backend = Predictor(backend, max_pixels=settings.max_pixels)
    if not callable(backend):
        raise InvalidInputError(f"backend must be a Predictor, a YoloV8Seg or a callable, got {type(backend).__name__}")
    scorer = None if text_model is None else resolve_scorer(text_model)
    cache = ResultCache(settings.cache_bytes)
    worker = SegmentationWorker(backend, cache, workers=settings.workers, queue_size=settings.queue_size)
    model_info = _model_info(backend, settings, scorer)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        worker.close()

    # /docs and /redoc would load their scripts from CDNs: off; the document itself stays at /openapi.json.
    app = FastAPI(title="fastsam", version="1", lifespan=lifespan, responses=ERRORS, docs_url=None, redoc_url=None,
                  description="FastSAM segmentation service: upload an image once (the all-instance pass runs "
                              "once and is cached), then prompt it with points, boxes or texts as often as you "
                              "like. Errors are JSON: {\"error\": {\"code\", \"message\"}}. With a token "
                              "(--token), /v1 requests but the health check need 'Authorization: Bearer <token>'.")
    app.state.settings, app.state.cache, app.state.worker = settings, cache, worker
    app.add_middleware(RequestGuard, settings=settings)

    @app.exception_handler(FastSAMError)
    async def _user_error(_: Request, exc: FastSAMError) -> JSONResponse:
        status = http_status(exc)
        headers = {"Retry-After": "2"} if status == 503 else None
        if status in (408, 413):  # the rest of the body is unread: close the connection instead of draining it
            headers = {"Connection": "close"}
        return error_response(status, error_code(exc), str(exc), headers=headers)

    @app.exception_handler(ClientGoneError)
    async def _client_gone(request: Request, exc: ClientGoneError) -> Response:
        # Nobody reads the answer; one line in the log instead of a traceback.
        client = "%s:%d" % tuple(request.client) if request.client else "a client"
        logger.warning("%s - %s %s: %s", client, request.method, request.url.path, exc)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log (the error middleware re-raises); the client learns nothing of it.
        return error_response(500, "internal", "internal error; the server log has the details")

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"], details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail), headers=getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get(f"{API}/health", response_model=schemas.HealthOut, tags=["service"])
    async def health() -> dict:
        """Liveness and load: answered by the event loop even while passes run."""
        return {"status": "ok", "queue": worker.stats(), "cache": cache.stats()}

    @app.get(f"{API}/model", response_model=schemas.ModelOut, tags=["service"])
    async def model() -> dict:
        """The model, its inference settings, whether text prompts are available, and the server's limits."""
        return model_info

    @app.post(f"{API}/images", response_model=schemas.ImageOut, tags=["images"], openapi_extra={
        "requestBody": {"required": True, "description": "the image file: raw bytes, or multipart field 'file'",
                        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}},
                                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                        "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
    async def upload(request: Request) -> dict:
        """Upload an image; the all-instance pass runs once (the same bytes again reuse it). Returns its id."""
        data = await read_upload(request, settings.max_upload_bytes, settings.body_timeout)
        check_image_header(data, settings.max_pixels)
        entry, reused = await worker.segment(data)
        return _image_out(entry, reused)

    def _image_out(entry, reused: bool) -> dict:
        h, w = entry.result.image_size
        return {"image_id": entry.image_id, "width": w, "height": h, "instances": len(entry.result),
                "reused": reused, "seconds": round(entry.seconds, 4), "nbytes": entry.nbytes}

    @app.get(f"{API}/images/{{image_id}}", response_model=schemas.ImageOut, tags=["images"])
    async def image_info(image_id: str = IMAGE_ID) -> dict:
        """What is cached for an image id."""
        return _image_out(cache.get(image_id), True)

    @app.delete(f"{API}/images/{{image_id}}", status_code=204, tags=["images"])
    async def delete(image_id: str = IMAGE_ID) -> Response:
        """Forget an image and its result."""
        cache.delete(image_id)
        return Response(status_code=204)

    @app.get(f"{API}/images/{{image_id}}/image", tags=["images"],
             responses={200: {"content": {"image/jpeg": {}}, "description": "the decoded image as JPEG"}})
    async def image_pixels(image_id: str = IMAGE_ID) -> Response:
        """The image as the server decoded it (EXIF orientation applied), for clients that cannot decode it."""
        rgb = cache.get(image_id).result.image
        if rgb is None:
            raise FeatureUnavailableError("this server's predictor keeps no images")
        ok, encoded = await run_in_threadpool(cv2.imencode, ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        return Response(encoded.tobytes(), media_type="image/jpeg")

    @app.get(f"{API}/images/{{image_id}}/everything", tags=["masks"],
             responses={200: {"content": {"application/json": {}, "image/png": {}}}})
    async def everything(image_id: str = IMAGE_ID, format: schemas.MaskFormat = FORMAT,
                         file_name: Optional[str] = FILE_NAME) -> Response:
        """Every instance of the image (no network run)."""
        entry = cache.get(image_id)
        return await run_in_threadpool(
            lambda: selection_response(entry.result.everything(), image_id, format, file_name))

    @app.post(f"{API}/images/{{image_id}}/prompt", tags=["masks"], openapi_extra=PROMPT_BODY,
              responses={200: {"content": {"application/json": {}, "image/png": {}}}})
    async def prompt(request: Request, image_id: str = IMAGE_ID, file_name: Optional[str] = FILE_NAME) -> Response:
        """Masks selected by points (one merged mask, or one per point), boxes (one each) and texts; a request
        needs at least one of points, boxes or texts. The JSON body is limited to max_prompt_bytes."""
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise UnsupportedMediaTypeError(f"content type {content_type!r} is not JSON; send the prompt as "
                                            f"application/json")
        raw = await read_limited(request, settings.max_prompt_bytes, settings.body_timeout, what="prompt body")
        body = await run_in_threadpool(schemas.parse_prompt, raw)
        entry = cache.get(image_id)
        _check_prompt_sizes(body, settings)
        if not body.texts:  # [] is no text prompt, whether or not a text model is configured
            body.texts = None
        if body.texts is not None and scorer is None:
            raise FeatureUnavailableError("text prompts need a text model; start the server with --text-model")
        if body.texts is None and any(v is not None for v in (body.text_mode, body.text_top_k, body.text_threshold)):
            raise InvalidInputError("text_mode / text_top_k / text_threshold were given without texts")

        def answer() -> Response:
            selection = entry.result.prompt(
                points=body.points, labels=body.labels, boxes=body.boxes, per_point=body.per_point,
                texts=body.texts, text_model=scorer, text_mode=body.text_mode, text_top_k=body.text_top_k,
                text_threshold=body.text_threshold)
            return selection_response(selection, image_id, body.format, file_name)

        return await run_in_threadpool(answer)

    return app

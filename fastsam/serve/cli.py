"""``fastsam serve``: the web app and HTTP API on uvicorn (localhost by default)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fastsam.cli_options import add_inference_arguments, chosen_model, predictor_options
from fastsam.errors import InvalidInputError
from fastsam.serve.settings import MIB, ServeSettings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def register(commands: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to fastsam's parser."""
    parser = commands.add_parser(
        "serve", help="web app and HTTP API: upload an image once, prompt it many times",
        description="Serve the web page (/) and the HTTP API (/v1, documented at /docs). The all-instance pass "
                    "runs once per uploaded image in a worker; prompts are answered from the cached result.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--text-model", help="CLIP folder or model id; enables text prompts")
    add_inference_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="all-instance passes run at once")
    parser.add_argument("--queue", type=int, default=8, help="passes that may wait for a worker (then 503)")
    parser.add_argument("--cache-mb", type=int, default=1024, help="memory budget of cached results (MiB)")
    parser.add_argument("--max-upload-mb", type=int, default=32, help="largest upload (MiB)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image (width x height)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(handler=run)
    return parser


def _settings(args: argparse.Namespace) -> ServeSettings:
    for name in ("port", "cache_mb", "max_upload_mb"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.port > 65535:
        raise InvalidInputError(f"--port must be at most 65535, got {args.port}")
    return ServeSettings(max_upload_bytes=args.max_upload_mb * MIB, max_pixels=args.max_pixels,
                         cache_bytes=args.cache_mb * MIB, workers=args.workers, queue_size=args.queue,
                         model_name=str(args.model))


def run(args: argparse.Namespace) -> int:
    """Load the model (and text model), then serve until interrupted."""
    chosen_model(args)
    settings = _settings(args)
    try:
        import uvicorn

        from fastsam.serve.app import create_app
    except ImportError as exc:
        from fastsam.prompts.text import MissingDependencyError

        raise MissingDependencyError(f"fastsam serve needs FastAPI and uvicorn: pip install 'fastsam[serve]' "
                                     f"({exc})") from exc
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(args.model), device=args.device, max_pixels=settings.max_pixels,
                          **predictor_options(args))
    app = create_app(predictor, settings, text_model=args.text_model)
    if args.host not in LOCAL_HOSTS:
        print(f"fastsam: warning: serving on {args.host}, reachable from other machines; the API has no "
              f"authentication", file=sys.stderr)
    print(f"fastsam: serving {args.model} on http://{args.host}:{args.port}/ (API under /v1; OpenAPI document at "
          f"/openapi.json, viewer at /docs when online)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0

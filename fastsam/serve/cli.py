"""``fastsam serve``: the web app and HTTP API on uvicorn (localhost by default)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from fastsam.cli_options import add_inference_arguments, chosen_model, predictor_options
from fastsam.errors import InvalidInputError
from fastsam.serve.settings import LOOPBACK_HOSTS, MIB, ServeSettings, normal_host

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
TOKEN_ENV = "FASTSAM_TOKEN"


def register(commands: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to fastsam's parser."""
    parser = commands.add_parser(
        "serve", help="web app and HTTP API: upload an image once, prompt it many times",
        description="Serve the web page (/) and the HTTP API (/v1, described by /openapi.json). The all-instance "
                    "pass runs once per uploaded image in a worker; prompts are answered from the cached result.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default localhost only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--text-model", help="CLIP folder or model id; enables text prompts")
    add_inference_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="all-instance passes run at once")
    parser.add_argument("--queue", type=int, default=8, help="passes that may wait for a worker (then 503)")
    parser.add_argument("--cache-mb", type=int, default=1024, help="memory budget of cached results (MiB)")
    parser.add_argument("--max-upload-mb", type=int, default=32, help="largest upload (MiB)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image (width x height)")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="seconds a connection has to send a complete request head (default 10)")
    parser.add_argument("--body-timeout", type=float, default=60.0,
                        help="seconds an upload or prompt body has to arrive in full (default 60)")
    parser.add_argument("--allowed-hosts", default=None,
                        help="comma-separated host names the Host header may name (DNS-rebinding defence); "
                             "default: localhost, plus the bound address, plus this machine's names when bound to "
                             "all interfaces; '*' accepts any")
    parser.add_argument("--allowed-origins", default="",
                        help="comma-separated browser origins (http://host:port) besides the server's own that "
                             "may upload, prompt or delete")
    parser.add_argument("--token", default=None,
                        help=f"API token that /v1 requests must send as 'Authorization: Bearer TOKEN' (default: "
                             f"${TOKEN_ENV}); required when binding beyond localhost")
    parser.add_argument("--no-token", action="store_true",
                        help="serve beyond localhost without a token: anyone who can reach the port may use it")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(handler=run)
    return parser


def _split(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    return normal_host(host) in LOOPBACK_HOSTS or normal_host(host).startswith("127.")


def default_allowed_hosts(bind: str) -> tuple[str, ...]:
    """The names a browser may use for a server bound to ``bind``: localhost, the bound address, and this
    machine's host name, fully qualified name and addresses when bound to every interface."""
    hosts = list(LOOPBACK_HOSTS)
    if bind.strip() in WILDCARD_HOSTS:
        names = {socket.gethostname(), socket.getfqdn()}
        hosts += sorted(n for n in names if n)
        try:
            hosts += sorted({info[4][0] for name in names if name for info in socket.getaddrinfo(name, None)})
        except OSError:  # a host name that does not resolve: its names still count
            pass
    else:
        hosts.append(bind)
    return tuple(dict.fromkeys(normal_host(h) for h in hosts))


def _token(args: argparse.Namespace) -> str | None:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is None and not args.no_token and not is_loopback(args.host):
        raise InvalidInputError(f"serving on {args.host} makes the API reachable from other machines: give a token "
                                f"(--token or ${TOKEN_ENV}) that clients send as 'Authorization: Bearer TOKEN', or "
                                f"--no-token to serve without one")
    return None if args.no_token else token


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The server's settings from the parsed ``serve`` options (InvalidInputError for bad ones)."""
    for name in ("port", "cache_mb", "max_upload_mb"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.port > 65535:
        raise InvalidInputError(f"--port must be at most 65535, got {args.port}")
    hosts = _split(args.allowed_hosts) if args.allowed_hosts is not None else default_allowed_hosts(args.host)
    if not hosts:
        raise InvalidInputError("--allowed-hosts names no host; give host names, or '*' for any")
    return ServeSettings(max_upload_bytes=args.max_upload_mb * MIB, max_pixels=args.max_pixels,
                         cache_bytes=args.cache_mb * MIB, workers=args.workers, queue_size=args.queue,
                         header_timeout=args.header_timeout, body_timeout=args.body_timeout, allowed_hosts=hosts,
                         allowed_origins=_split(args.allowed_origins), token=_token(args), model_name=str(args.model))


def run(args: argparse.Namespace) -> int:
    """Load the model (and text model), then serve until interrupted."""
    chosen_model(args)
    settings = serve_settings(args)
    try:
        import uvicorn

        from fastsam.serve.app import create_app
        from fastsam.serve.protocol import uvicorn_options
    except ImportError as exc:
        from fastsam.errors import MissingDependencyError
        from fastsam.extras import install_hint

        raise MissingDependencyError(f"fastsam serve needs FastAPI and uvicorn: {install_hint('serve')} "
                                     f"({exc})") from exc
    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    predictor = Predictor(load_model(args.model), device=args.device, max_pixels=settings.max_pixels,
                          **predictor_options(args))
    app = create_app(predictor, settings, text_model=args.text_model)
    host = f"[{args.host}]" if ":" in args.host else args.host
    if not is_loopback(args.host):
        access = "with the token" if settings.token else "WITHOUT authentication (--no-token)"
        print(f"fastsam: warning: serving on {args.host}, reachable from other machines, {access}; Host names "
              f"accepted: {', '.join(settings.allowed_hosts)}", file=sys.stderr)
    page = f"http://{host}:{args.port}/" + ("#token=YOUR_TOKEN" if settings.token else "")
    print(f"fastsam: serving {args.model} on {page} (API under /v1; OpenAPI document at /openapi.json)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **uvicorn_options(settings))
    return 0

"""What every request passes before it reaches a route: Host, Origin and token checks, methods, security headers.

- Host: only the names the server was bound for (``ServeSettings.allowed_hosts``), so that a page whose DNS name
  is rebound to 127.0.0.1 cannot read or drive the local server (DNS rebinding).
- Origin: a POST or DELETE sent by a browser page of another origin (a cross-site form upload) is refused.
- Token: with ``ServeSettings.token`` set, /v1 requests other than the health check need
  ``Authorization: Bearer <token>``.
- Methods: OPTIONS answers with every method the path takes, HEAD works wherever GET does, and 405 names them all
  (FastAPI answers with the first matching route's methods only and has no HEAD).
- Every response carries nosniff, a CSP that the bundled page satisfies (own scripts and styles only, no framing)
  and no referrer.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from fastsam.errors import FastSAMError
from fastsam.serve.errors import (CrossOriginError, UnauthorizedError, UnknownHostError, error_code, http_status,
                                  public_message)
from fastsam.serve.settings import ServeSettings, normal_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: "
                                 b"data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                 b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/v1/health"}  # answered without the token (liveness probes)


def error_response(status: int, code: str, message: str, details: list | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """The API's JSON error ``{"error": {"code", "message"[, "details"]}}``, without addresses or local paths."""
    body: dict = {"error": {"code": code, "message": public_message(message)}}
    if details is not None:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def allowed_methods(routes: list, scope: Scope) -> set[str]:
    """Every method some route takes at ``scope``'s path (HEAD with GET, and OPTIONS); empty when none matches."""
    methods: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] is not Match.NONE:  # PARTIAL: the path matches, the method does not
            # A mount (the static files) has no method list: it serves GET.
            methods |= set(getattr(route, "methods", None) or {"GET"})
    if "GET" in methods:
        methods.add("HEAD")
    return methods | {"OPTIONS"} if methods else methods


def _same_origin(origin: str, host_header: str, scheme: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host_header.lower()


class RequestGuard:
    """Pure ASGI middleware applying the checks above; ``app`` is the application it guards."""

    def __init__(self, app: Callable, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.any_host = "*" in settings.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        answer = self._answer_before_the_app(scope)
        if answer is not None:
            await answer(scope, receive, send_secured)
        elif scope["method"] == "HEAD":
            await self._head_as_get(scope, receive, send_secured)
        else:
            await self.app(scope, receive, send_secured)

    def _answer_before_the_app(self, scope: Scope) -> Response | None:
        """The answer to a request that must not reach the app (refused, OPTIONS, 405), or None."""
        headers = Headers(scope=scope)
        method = scope["method"]
        try:
            self._check_host(headers)
            methods = allowed_methods(scope["app"].router.routes, scope) if "app" in scope else set()
            allow = {"Allow": ", ".join(sorted(methods))}
            if methods and method == "OPTIONS":
                return Response(status_code=204, headers=allow)
            if methods and method not in methods:
                return error_response(405, "method_not_allowed", f"{method} is not allowed here; use "
                                      f"{allow['Allow']}", headers=allow)
            if method in STATE_CHANGING:
                self._check_origin(headers, scope)
            if self.settings.token is not None and scope["path"].startswith("/v1/") and \
                    scope["path"] not in OPEN_PATHS:
                self._check_token(headers)
        except FastSAMError as exc:
            extra = {"WWW-Authenticate": "Bearer"} if isinstance(exc, UnauthorizedError) else {}
            # The body of a refused request is never read: close rather than drain it.
            return error_response(http_status(exc), error_code(exc), str(exc),
                                  headers={"Connection": "close", **extra})
        return None

    def _check_host(self, headers: Headers) -> None:
        raw = headers.get("host", "")
        if self.any_host:
            return
        try:
            host = normal_host(raw)
        except FastSAMError:
            host = ""
        if host not in self.settings.allowed_hosts:
            shown = raw[:100].encode("ascii", "replace").decode() or "(none)"
            raise UnknownHostError(f"Host {shown!r} is not a name this server answers to; if it is, start the "
                                   f"server with --allowed-hosts naming it")

    def _check_origin(self, headers: Headers, scope: Scope) -> None:
        origin = headers.get("origin")
        if origin is None:  # not sent by a browser page (curl, scripts): nothing cross-site about it
            return
        normal = origin.strip().rstrip("/").lower()
        if normal in self.settings.allowed_origins or _same_origin(normal, headers.get("host", ""),
                                                                   scope.get("scheme", "http")):
            return
        shown = origin[:100].encode("ascii", "replace").decode()
        raise CrossOriginError(f"requests from origin {shown!r} are not accepted; only pages of this server (or "
                               f"origins given with --allowed-origins) may upload, prompt or delete")

    def _check_token(self, headers: Headers) -> None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        expected = self.settings.token or ""
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise UnauthorizedError("this server needs its API token: send 'Authorization: Bearer <token>' (the "
                                    "token given to fastsam serve with --token or FASTSAM_TOKEN)")

    async def _head_as_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HEAD answered as GET with the body dropped (the headers, Content-Length included, stay)."""

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

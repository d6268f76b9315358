"""Limits, timeouts and access rules of the HTTP service, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from fastsam.errors import InvalidInputError

MIB = 1024 * 1024
#: Host names that always mean this machine; a server bound to loopback answers only to these.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """What the server accepts and how much it holds.

    max_upload_bytes: largest accepted upload body (bytes). max_pixels: largest decoded image (width x height).
    max_prompt_bytes: largest prompt JSON body (bytes), refused while it streams in.
    cache_bytes: memory budget of cached all-instance results (estimated bytes; least recently used evicted).
    workers: network passes run at once; queue_size: passes that may wait for a worker before uploads get 503.
    max_prompts: most points, boxes or texts in one prompt request.
    header_timeout: seconds a connection may take to send a complete request head (line and headers), counted
    from its opening or from the end of the previous response; slower connections are closed (slowloris).
    body_timeout: seconds an upload or prompt body may take to arrive in full; slower ones get 408.
    allowed_hosts: host names / addresses (no port) the Host header may name, against DNS rebinding; "*" is any.
    allowed_origins: browser origins ("http://host:port") besides the server's own that may POST or DELETE.
    token: when set, every /v1 request but the health check needs ``Authorization: Bearer <token>``.
    """

    max_upload_bytes: int = 32 * MIB
    max_pixels: int = 40_000_000
    max_prompt_bytes: int = 256 * 1024
    cache_bytes: int = 1024 * MIB
    workers: int = 1
    queue_size: int = 8
    max_prompts: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = ()
    token: str | None = None
    model_name: str = "model"

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_prompt_bytes", "cache_bytes", "workers", "max_prompts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise InvalidInputError(f"queue_size must be an integer >= 0, got {self.queue_size!r}")
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(self.allowed_hosts, str) or not self.allowed_hosts:
            raise InvalidInputError(f"allowed_hosts must be a non-empty tuple of host names, got "
                                    f"{self.allowed_hosts!r}")
        object.__setattr__(self, "allowed_hosts", tuple(normal_host(h) for h in self.allowed_hosts))
        if isinstance(self.allowed_origins, str):
            raise InvalidInputError(f"allowed_origins must be a tuple of origins, got {self.allowed_origins!r}")
        object.__setattr__(self, "allowed_origins", tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins))
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 8
                                       or not self.token.isprintable() or " " in self.token):
            raise InvalidInputError("token must be at least 8 printable characters without spaces")


def normal_host(host: str) -> str:
    """A host name or address as the Host check compares it: lower case, IPv6 without brackets, no port."""
    if not isinstance(host, str) or not host.strip():
        raise InvalidInputError(f"a host must be a non-empty name or address, got {host!r}")
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port; more colons is a bare IPv6 address
        host = host.split(":", 1)[0]
    return host.rstrip(".")

"""Limits and defaults of the HTTP service, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from fastsam.errors import InvalidInputError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """What the server accepts and how much it holds.

    max_upload_bytes: largest accepted upload body (bytes). max_pixels: largest decoded image (width x height).
    cache_bytes: memory budget of cached all-instance results (estimated bytes; least recently used evicted).
    workers: network passes run at once; queue_size: passes that may wait for a worker before uploads get 503.
    max_prompts: most points, boxes or texts in one prompt request.
    """

    max_upload_bytes: int = 32 * MIB
    max_pixels: int = 40_000_000
    cache_bytes: int = 1024 * MIB
    workers: int = 1
    queue_size: int = 8
    max_prompts: int = 64
    model_name: str = "model"

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "cache_bytes", "workers", "max_prompts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise InvalidInputError(f"queue_size must be an integer >= 0, got {self.queue_size!r}")

"""Batch segmentation of large image collections into sharded, resumable COCO-RLE JSONL.

    from fastsam.batch import run_batch, read_records, read_errors
    summary = run_batch("photos/", "out/", model="FastSAM-s", imgsz=640, workers=2)
    for record in read_records("out/"): ...

Command line: ``fastsam batch SRC DST [--prompts prompts.jsonl] [--workers N] [--engine local|ray]``.
See :mod:`fastsam.batch.records` for the record format and :mod:`fastsam.batch.shards` for the output folder.
"""

from fastsam.batch.api import run_batch
from fastsam.batch.job import Settings, Summary, read_errors, read_records
from fastsam.batch.records import load_prompts
from fastsam.batch.sources import Source, open_source

__all__ = ["run_batch", "read_records", "read_errors", "load_prompts", "open_source", "Source", "Settings",
           "Summary"]

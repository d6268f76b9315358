"""Text-prompt latency: CLIP ViT-B/32-sized random weights, 100 synthetic instances on a 1000x700 image.

    python benchmarks/text_prompt.py --repeat 5 --json out/bench_text_prompt.json

Builds a randomly initialised CLIP with the default ``CLIPConfig`` (ViT-B/32: 224 px input, 32 px patches,
12 x 768 vision layers, 12 x 512 text layers; about 600 MB) in a temporary folder (or ``--model``: an existing
folder), no download. Then:

* first call: load the model from the folder (cold, nothing cached) + the first text prompt;
* warm calls: median of ``--repeat`` prompts with the model already loaded (new texts each call, so the text
  tower runs too), for each ``--batch-size`` (crops per CLIP forward; 1 = one crop at a time);
* a per-stage breakdown of one warm call: crops, CLIP preprocessing, vision tower, text tower, selection.

Wall times on a shared machine grow with other work; the process CPU time (all threads) is reported too.

Prints a markdown table and writes the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_json  # noqa: E402

from fastsam.prompts.text import (  # noqa: E402
    build_random_clip, clear_clip_cache, instance_crops, load_clip_scorer, pick_instances, text_prompt, TextScores,
)
from fastsam.result import SegmentationResult  # noqa: E402
from fastsam.rle import RunLengthMask  # noqa: E402


def synthetic_result(n: int = 100, width: int = 1000, height: int = 700, seed: int = 0) -> SegmentationResult:
    """``n`` random ellipses and rectangles (each 400 px or more, all scored) on a noisy image."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    rles, boxes = [], []
    for k in range(n):
        w, h = rng.integers(20, 260, 2)
        x1, y1 = rng.integers(0, width - w), rng.integers(0, height - h)
        if k % 2:
            cx, cy = x1 + w / 2, y1 + h / 2
            mask = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
        else:
            mask = np.zeros((height, width), bool)
            mask[y1:y1 + h, x1:x1 + w] = True
        image[mask] = (image[mask] // 4 + rng.integers(0, 190, 3)).astype(np.uint8)
        rles.append(RunLengthMask.from_mask(mask))
        boxes.append((x1, y1, x1 + w, y1 + h))
    return SegmentationResult((height, width), np.array(boxes, np.float32), np.linspace(0.95, 0.4, n, dtype=np.float32),
                              rles, image=image)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def breakdown(result: SegmentationResult, scorer, texts: list[str]) -> dict[str, float]:
    """Seconds per stage of one prompt with a loaded model (the stages text_prompt runs)."""
    from PIL import Image

    stages = {}
    (ids, crops), stages["crops"] = timed(lambda: instance_crops(result.image, result.rles, result.areas,
                                                                 result.mask_bounds))
    pixels, stages["preprocess"] = timed(lambda: [scorer.processor(
        images=[Image.fromarray(c) for c in crops[s:s + scorer.batch_size]], return_tensors="pt")["pixel_values"]
        for s in range(0, len(crops), scorer.batch_size)])

    def vision():
        with torch.inference_mode():
            return [scorer.model.get_image_features(pixel_values=p.to(scorer.device)) for p in pixels]

    _, stages["vision"] = timed(vision)
    scorer._texts.clear()  # noqa: SLF001 - time the text tower, not the text cache
    text_emb, stages["text"] = timed(lambda: scorer.embed_texts(texts))
    image_emb = scorer.embed_images(crops)
    _, stages["select"] = timed(lambda: pick_instances(TextScores.from_cosine(texts, ids, image_emb @ text_emb.T)))
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="an existing CLIP folder (default: build a random "
                                                                  "ViT-B/32-sized one in a temporary folder)")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--texts", nargs="+", default=["the yellow dog"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 1], dest="batch_sizes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=Path("out/bench_text_prompt.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    result = synthetic_result(args.instances)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        build_s = None
        if folder is None:
            folder, build_s = timed(lambda: build_random_clip(Path(tmp) / "clip-vit-b32-random"))
        clear_clip_cache()
        # First call: the model is loaded from disk by the prompt itself.
        first, first_s = timed(lambda: text_prompt(result, args.texts, model=folder, device=args.device))
        clear_clip_cache()
        scorer, load_s = timed(lambda: load_clip_scorer(folder, device=args.device))
        rows = []
        for batch_size in args.batch_sizes:
            scorer = load_clip_scorer(folder, device=args.device, batch_size=batch_size)
            text_prompt(result, [f"warm-up {batch_size}"], model=folder, device=args.device)
            runs, cpu = [], []
            for r in range(args.repeat):
                texts = [f"{t} {batch_size} {r}" for t in args.texts]  # new texts: the text tower runs each time
                cpu_start = time.process_time()
                runs.append(timed(lambda: text_prompt(result, texts, model=folder, device=args.device))[1])
                cpu.append(time.process_time() - cpu_start)
            stages = breakdown(result, scorer, args.texts)
            rows.append({"batch_size": batch_size, "median_s": statistics.median(runs), "min_s": min(runs),
                         "median_cpu_s": statistics.median(cpu), "runs_s": runs, "cpu_s": cpu, "stages_s": stages})
    config = scorer.model.config
    report = {
        "instances": args.instances, "scored": int(first.scores.instance_ids.size), "image": [1000, 700],
        "texts": args.texts, "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "machine": platform.processor() or platform.machine(),
        "model": str(args.model) if args.model else "random CLIPConfig() (ViT-B/32 sizes)",
        "vision": {"image_size": config.vision_config.image_size, "patch_size": config.vision_config.patch_size,
                   "hidden_size": config.vision_config.hidden_size, "layers": config.vision_config.num_hidden_layers},
        "parameters_m": round(sum(p.numel() for p in scorer.model.parameters()) / 1e6, 1),
        "cpu_count": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "build_random_model_s": build_s, "first_call_s": first_s, "load_s": load_s, "rows": rows,
    }
    print(f"{report['scored']} instances scored, {len(args.texts)} text(s), {report['parameters_m']} M parameters, "
          f"device {args.device}, {report['threads']} threads, load average {report['load_average_1m_at_end']} "
          f"on {report['cpu_count']} CPUs (other work on the machine inflates the times)")
    print(f"first call (load from disk + prompt): {first_s:.2f} s; model load alone: {load_s:.2f} s")
    stages = ("crops", "preprocess", "vision", "text", "select")
    print("| batch size | median | min | median CPU time | " + " | ".join(stages) + " |")
    print("|" + "---|" * (len(stages) + 4))
    for row in rows:
        cells = " | ".join(f"{row['stages_s'][k] * 1000:.0f} ms" for k in stages)
        print(f"| {row['batch_size']} | {row['median_s']:.2f} s | {row['min_s']:.2f} s | {row['median_cpu_s']:.2f} s "
              f"| {cells} |")
    write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

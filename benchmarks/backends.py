"""End to end per backend: everything mode from file to COCO RLE JSON on disk with torch fp32 / bf16,
onnxruntime fp32 and OpenVINO fp32 / bf16 / int8, each row's network against the same-run matmul of its own
precision, mask IoU against torch fp32, and the steal column.

    python benchmarks/backends.py                                   # FastSAM-s fixture, dogs.jpg and sa_8776.jpg
    python benchmarks/backends.py --models n84 --repeat 7
    python benchmarks/backends.py --checkpoint s-trained=runs/s20/weights/last.safetensors --models s-trained

All backends run in one process, passes interleaved (backend A, B, C, ..., then again), each pass right after a
fp32 and a bf16 2048^3 matmul (the best of three each): on this shared VM only adjacent moments compare. A row's
share is the median over its passes of the network's GFLOP/s over the matmul of its precision timed just before
(fp32 rows: fp32 matmul; bf16 rows: bf16 matmul; int8 rows: the bf16 matmul too, since torch has no AMX int8
matmul to time; AMX's int8 peak is twice its bf16 one, so halve the int8 share for its share of the int8 limit).
Conversion, export and quantisation happen once before timing (cached on disk as the CLI caches them). Needs
../shared/fixtures (or $FASTSAM_SHARED); a backend whose optional dependency is missing is left out.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report import write_json  # noqa: E402

from benchmarks.run import (  # noqa: E402
    CHECKPOINT_CONF, CONF, FIXTURES, MATMUL_SIZE, MATMULS_PER_PASS, STAGES, _load, best_matmul_seconds,
    network_flops, steal_seconds,
)

BACKENDS = ("torch fp32", "torch bf16", "onnxruntime fp32", "openvino fp32", "openvino bf16", "openvino int8")
# The matmul each precision's share is taken against (int8: see the module docstring).
LIMIT = {"fp32": "fp32", "bf16": "bf16", "int8": "bf16"}
CHECKPOINTS = {"s": FIXTURES / "fastsam-s-parity.pt", "n84": FIXTURES / "yolov8n-seg-coco128-ultralytics84.pt",
               "default": REPO / "fastsam" / "weights" / "fastsam-default.safetensors"}
CONFS = {**CONF, "default": 0.15}  # the bundled model's own default (see its model card)
CALIBRATION = ("sa_10039.jpg", "sa_1309.jpg", "000000000009.jpg")  # fixture images that are not benchmarked


def make_predictor(backend: str, weights: Path, conf: float, imgsz: int, calibration: list[Path], cache: Path):
    """A Predictor for one of BACKENDS, or None when its optional dependency is missing."""
    from fastsam.errors import FastSAMError
    from fastsam.inference.predictor import Predictor
    from fastsam.model.checkpoint import load_weights

    runtime, precision = backend.split()
    try:
        if runtime == "torch":
            return Predictor(load_weights(weights), imgsz=imgsz, conf=conf, precision=precision)
        if runtime == "onnxruntime":
            from fastsam.inference.onnx_backend import onnx_backend_for

            return Predictor(onnx_backend_for(weights, cache=cache / "onnx"), imgsz=imgsz, conf=conf)
        from fastsam.inference.openvino_backend import openvino_backend_for

        network = openvino_backend_for(weights, precision, calibration_images=calibration, imgsz=imgsz,
                                       cache=cache / "openvino")
        return Predictor(network, imgsz=imgsz, conf=conf)
    except (ImportError, FastSAMError) as exc:
        print(f"{backend}: left out ({exc})", file=sys.stderr)
        return None


def end_to_end(predictor, image: Path, out: Path) -> dict[str, float]:
    """One pass, file in to COCO RLE JSON on disk: stage seconds, and the masks as COCO RLEs."""
    from fastsam.io.export import write_coco_json

    start = time.perf_counter()
    result = predictor(image, keep_image=False)
    encode_start = time.perf_counter()
    write_coco_json(result.everything(), out, file_name=image.name)
    stages = dict(result.timings, encode=time.perf_counter() - encode_start)
    stages["total"] = time.perf_counter() - start
    return {"stages": stages, "masks": [r.to_coco() for r in result.rles]}


def measure(model_key: str, weights: Path, image: Path, backends: dict, repeat: int, imgsz: int) -> list[dict]:
    """Every backend on ``image``, passes interleaved; one row per backend."""
    import torch

    from fastsam.eval.matching import matched_mask_ious
    from fastsam.inference.letterbox import plan_letterbox
    from fastsam.io.image import load_image

    operands = {"fp32": [torch.randn(MATMUL_SIZE, MATMUL_SIZE) for _ in range(2)]}
    operands["bf16"] = [m.bfloat16() for m in operands["fp32"]]
    rgb = load_image(image)
    input_size = plan_letterbox((int(rgb.shape[0]), int(rgb.shape[1])), imgsz).input_size
    flops = network_flops(_load(model_key, {model_key: str(weights)}).eval().fuse(), input_size)
    runs = {name: [] for name in backends}
    matmuls = {name: {"fp32": [], "bf16": []} for name in backends}
    masks = {}
    steal_start, wall_start = steal_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeat + 1):  # the first round warms every backend up
            for name, predictor in backends.items():
                for precision, pair in operands.items():
                    matmuls[name][precision].append(best_matmul_seconds(*pair, MATMULS_PER_PASS))
                done = end_to_end(predictor, image, Path(tmp) / "out.json")
                masks[name] = done["masks"]
                if k:
                    runs[name].append(done["stages"])
    steal_end = steal_seconds()
    steal = None if steal_start is None or steal_end is None else (
        (steal_end - steal_start) / ((time.perf_counter() - wall_start) * (os.cpu_count() or 1)))
    reference = masks.get("torch fp32")
    rows = []
    for name in backends:
        precision = name.split()[1]
        limit = matmuls[name][LIMIT[precision]][1:]  # warm-up round excluded
        seconds = {key: statistics.median(r.get(key, 0.0) for r in runs[name]) for key in (*STAGES, "total")}
        share = statistics.median(flops / r["network"] / (2 * MATMUL_SIZE**3 / m) for r, m in zip(runs[name], limit))
        iou = None
        if reference is not None and name != "torch fp32":
            matched = matched_mask_ious(masks[name], reference)
            iou = float(matched.mean()) if matched.size else 1.0
        rows.append({
            "model": model_key, "image": image.name, "backend": name, "instances": len(masks[name]),
            "seconds": seconds, "network_gflop": flops / 1e9, "network_gflops": flops / 1e9 / seconds["network"],
            "limit": LIMIT[precision], "share_of_limit": share,
            "matmul_gflops": {p: statistics.median(2 * MATMUL_SIZE**3 / m for m in matmuls[name][p][1:]) / 1e9
                              for p in operands},
            "post_seconds": seconds["nms"] + seconds["masks"] + seconds["encode"],
            "mask_iou_vs_torch_fp32": iou, "steal": steal,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["s"],
                        help="s (FastSAM-s fixture), n84, default (the bundled model) or names given with --checkpoint")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--images", nargs="+", default=["dogs.jpg", "sa_8776.jpg"])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=REPO / "out" / "backend-cache",
                        help="converted networks (reused by later runs)")
    parser.add_argument("--json", type=Path, default=REPO / "out" / "backends.json")
    args = parser.parse_args()
    checkpoints = dict(CHECKPOINTS)
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            parser.error(f"--checkpoint takes NAME=PATH of an existing file, got {item!r}")
        checkpoints[name] = Path(path).resolve()
    unknown = [m for m in args.models if m not in checkpoints]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: use {', '.join(checkpoints)} or --checkpoint NAME=PATH")
    if not CHECKPOINTS["s"].is_file():
        sys.exit(f"benchmarks need the fixtures in {FIXTURES} (set FASTSAM_SHARED)")

    import torch

    calibration = [FIXTURES / "images" / name for name in CALIBRATION if name not in args.images]
    rows, setup = [], {}
    for model_key in args.models:
        conf = CONFS.get(model_key, CHECKPOINT_CONF)
        backends = {}
        for name in args.backends:
            start = time.perf_counter()
            predictor = make_predictor(name, checkpoints[model_key], conf, args.imgsz, calibration, args.cache)
            if predictor is not None:
                backends[name] = predictor
                setup[f"{model_key} {name}"] = time.perf_counter() - start
        for image_name in args.images:
            rows += measure(model_key, checkpoints[model_key], FIXTURES / "images" / image_name, backends,
                            args.repeat, args.imgsz)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeat} interleaved passes after a warm-up\n")
    print("| model | image | backend | instances | network | post (nms + masks + encode) | total | network GFLOP/s "
          "| % of limit (its matmul GFLOP/s) | same-run matmul fp32 / bf16 | mask IoU vs torch fp32 | steal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, mm = r["seconds"], r["matmul_gflops"]
        iou = "-" if r["mask_iou_vs_torch_fp32"] is None else f"{r['mask_iou_vs_torch_fp32']:.3f}"
        print(f"| {r['model']} | {r['image']} | {r['backend']} | {r['instances']} | {s['network'] * 1000:.0f} ms | "
              f"{r['post_seconds'] * 1000:.0f} ms | {s['total'] * 1000:.0f} ms | {r['network_gflops']:.0f} | "
              f"{r['share_of_limit'] * 100:.0f}% of {r['limit']} ({mm[r['limit']]:.0f}) | "
              f"{mm['fp32']:.0f} / {mm['bf16']:.0f} | {iou} | "
              f"{'-' if r['steal'] is None else format(r['steal'], '.0%')} |")
    print("\nsetup (conversion / export / quantisation, or reading the cache): " +
          ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()))
    write_json(args.json, {"torch": torch.__version__, "cores": os.cpu_count(), "repeat": args.repeat,
                           "imgsz": args.imgsz, "setup_seconds": setup, "rows": rows})


if __name__ == "__main__":
    main()

"""Network time and mask agreement of the inference backends: torch fp32, torch bf16, onnxruntime fp32 and
onnxruntime int8 (dynamic and static QDQ), everything mode at imgsz 1024.

    PYTHONPATH=. python benchmarks/onnx_backend.py --model ../shared/fixtures/fastsam-s-parity.pt \
        ../shared/fixtures/images/sa_8776.jpg ../shared/fixtures/images/dogs.jpg --repeat 7

"network" is the median over --repeat timed runs (after one warm-up) of the backend call alone on the letterboxed
input (1, 3, H, W), numpy/torch conversions included. "IoU vs fp32" is the mean over torch fp32's masks of the
IoU with their greedy one-to-one match among the backend's masks (unmatched masks count 0), as in
tests/test_parity.py; the instance counts are shown beside it. Static int8 is calibrated on --calibration images
(by default the fixture images that are not benchmarked). Prints a markdown table, writes JSON.

On a shared or busy machine prefer --threads 1: with two OpenMP threads and another process on the same cores,
torch's spinning thread barriers make its times several-fold worse and noisier than onnxruntime's. The random-weight
parity checkpoints are very sensitive to any rounding (scores packed at the threshold, mask logits near 0); the
checkpoint with learned weights (yolov8n-seg-coco128-ultralytics84.pt, --conf 0.05) shows reduced precision on a
better-conditioned network.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.report import write_json  # noqa: E402

from fastsam.inference.letterbox import apply_letterbox, plan_letterbox  # noqa: E402
from fastsam.inference.onnx_backend import OnnxBackend  # noqa: E402
from fastsam.inference.predictor import STRIDE, Predictor  # noqa: E402
from fastsam.io.image import load_image  # noqa: E402
from fastsam.model.onnx_export import export_onnx, quantize_onnx  # noqa: E402
from fastsam.model.zoo import load_model  # noqa: E402
from fastsam.model.head import HeadOutput, decode_predictions  # noqa: E402
from fastsam.model.yolov8_seg import YoloV8Seg  # noqa: E402
from fastsam.eval.matching import matched_mask_ious  # noqa: E402


class TorchBackend:
    """The PyTorch network in a given dtype / memory format, behind the predictor's Backend protocol.

    ``fp32_outputs`` (bf16 only): the trunk runs in bf16 but the last 1x1 convolution of each head branch, the
    last prototype layer and the box decoding run in fp32. bf16 keeps 8 significant bits, so box coordinates
    near 1024 px would otherwise be rounded to 4-8 px steps and the mask coefficients / prototypes to ~0.5 %.
    """

    def __init__(self, model: YoloV8Seg, dtype: torch.dtype = torch.float32, channels_last: bool = False,
                 autocast: bool = False, fp32_outputs: bool = False) -> None:
        model = copy.deepcopy(model).eval().fuse()
        if not autocast:
            model = model.to(dtype)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if fp32_outputs:
            for branch in (model.head.box_convs, model.head.cls_convs, model.head.coef_convs):
                for convs in branch:
                    convs[2].float()
            model.head.proto.cv3.float()
        self.model, self.dtype, self.channels_last, self.autocast = model, dtype, channels_last, autocast
        self.fp32_outputs = fp32_outputs
        self.num_classes = model.cfg.num_classes

    def _mixed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model, head = self.model, self.model.head
        features = model.neck(model.backbone(images))

        def last_fp32(convs: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
            return convs[2](convs[1](convs[0](x)).float())

        proto = head.proto
        protos = proto.cv3(proto.cv2(proto.upsample(proto.cv1(features[0]))).float())
        out = HeadOutput(
            box_logits=[last_fp32(c, f) for c, f in zip(head.box_convs, features)],
            class_logits=[last_fp32(c, f) for c, f in zip(head.cls_convs, features)],
            coefficients=[last_fp32(c, f) for c, f in zip(head.coef_convs, features)],
            protos=protos,
        )
        return decode_predictions(out, model.cfg.reg_max), protos

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.autocast:
            with torch.autocast("cpu", dtype=self.dtype):
                predictions, protos = self.model(images)
        elif self.fp32_outputs:
            predictions, protos = self._mixed(images.to(self.dtype))
        else:
            predictions, protos = self.model(images.to(self.dtype))
        return predictions.float(), protos.float()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if "bf16" in f or "amx" in f or "vnni" in f)
    except OSError:
        pass
    return []


def network_input(image: Path, imgsz: int) -> torch.Tensor:
    rgb = load_image(image)
    box = plan_letterbox((int(rgb.shape[0]), int(rgb.shape[1])), imgsz, STRIDE)
    return torch.from_numpy(apply_letterbox(rgb, box)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def time_network(backend, tensor: torch.Tensor, repeat: int) -> list[float]:
    with torch.inference_mode():
        backend(tensor)  # warm-up (oneDNN / onnxruntime kernel selection)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            backend(tensor)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--conf", type=float, default=0.4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--calibration", nargs="*", type=Path, default=None,
                        help="static int8 calibration images (default: the other images beside the first one)")
    parser.add_argument("--variants", nargs="+", default=None, help="subset of variants to run (by name)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the exported .onnx files here")
    parser.add_argument("--json", type=Path, default=Path("out/bench_onnx_backend.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    calibration = args.calibration
    if calibration is None:
        chosen = {p.resolve() for p in args.images}
        calibration = sorted(p for p in args.images[0].parent.glob("*.jpg") if p.resolve() not in chosen)
    model = load_model(args.model, progress=False).eval()

    tmp = tempfile.TemporaryDirectory(prefix="fastsam-bench-onnx-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    fp32_path = work / "model.onnx"
    start = time.perf_counter()
    export_onnx(model, fp32_path)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    quantize_onnx(fp32_path, work / "model-int8-dynamic.onnx", mode="dynamic")
    quant_dynamic_s = time.perf_counter() - start
    start = time.perf_counter()
    quantize_onnx(fp32_path, work / "model-int8-static.onnx", mode="static", calibration_images=calibration,
                  imgsz=args.imgsz)
    quant_static_s = time.perf_counter() - start

    variants = {
        "torch fp32": lambda: TorchBackend(model),
        "torch fp32 channels-last": lambda: TorchBackend(model, channels_last=True),
        "torch bf16": lambda: TorchBackend(model, torch.bfloat16),
        "torch bf16 channels-last": lambda: TorchBackend(model, torch.bfloat16, channels_last=True),
        "torch bf16 channels-last fp32-out": lambda: TorchBackend(model, torch.bfloat16, channels_last=True,
                                                                 fp32_outputs=True),
        "torch bf16 autocast": lambda: TorchBackend(model, torch.bfloat16, autocast=True),
        "onnxruntime fp32": lambda: OnnxBackend(fp32_path, threads=threads),
        "onnxruntime int8 dynamic": lambda: OnnxBackend(work / "model-int8-dynamic.onnx", threads=threads),
        "onnxruntime int8 static": lambda: OnnxBackend(work / "model-int8-static.onnx", threads=threads),
    }
    if args.variants:
        unknown = set(args.variants) - set(variants)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; choose from {list(variants)}")
        variants = {k: v for k, v in variants.items() if k == "torch fp32" or k in args.variants}

    rows = []
    for image in args.images:
        tensor = network_input(image, args.imgsz)
        reference = None
        for name, make in variants.items():
            backend = make()
            times = time_network(backend, tensor, args.repeat)
            result = Predictor(backend, imgsz=args.imgsz, conf=args.conf)(image, keep_image=False)
            masks = [r.to_coco() for r in result.rles]
            if reference is None:
                reference = (masks, times)
            matched = matched_mask_ious(masks, reference[0])
            rows.append({
                "image": image.name, "input": list(tensor.shape[2:]), "variant": name,
                "network_ms": 1000 * statistics.median(times), "network_ms_all": [1000 * t for t in times],
                "speedup_vs_torch_fp32": statistics.median(reference[1]) / statistics.median(times),
                "instances": len(masks), "reference_instances": len(reference[0]),
                "mask_iou_vs_torch_fp32": float(matched.mean()) if len(matched) else 1.0,
                "min_matched_iou": float(matched.min()) if len(matched) else 1.0,
            })
            del backend

    print(f"\nmodel {args.model}, imgsz {args.imgsz}, conf {args.conf}, {threads} threads, torch {torch.__version__}, "
          f"CPU flags: {' '.join(cpu_flags()) or 'none of bf16/amx/vnni'}")
    print(f"export {export_s:.1f} s, int8 dynamic {quant_dynamic_s:.1f} s, int8 static {quant_static_s:.1f} s "
          f"({len(calibration)} calibration images)\n")
    print("| image | input | variant | network ms (median) | speed-up vs torch fp32 | instances | mask IoU vs fp32 |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['image']} | {row['input'][0]}x{row['input'][1]} | {row['variant']} | {row['network_ms']:.0f} | "
              f"{row['speedup_vs_torch_fp32']:.2f}x | {row['instances']} / {row['reference_instances']} | "
              f"{row['mask_iou_vs_torch_fp32']:.4f} |")
    write_json(args.json, {
        "model": args.model, "imgsz": args.imgsz, "conf": args.conf, "repeat": args.repeat, "threads": threads,
        "torch": torch.__version__, "platform": platform.platform(), "cpu_flags": cpu_flags(),
        "export_s": export_s, "quantize_dynamic_s": quant_dynamic_s, "quantize_static_s": quant_static_s,
        "calibration_images": [p.name for p in calibration], "rows": rows,
    })
    tmp.cleanup()


if __name__ == "__main__":
    main()

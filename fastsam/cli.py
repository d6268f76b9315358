"""Command line: ``fastsam segment``, ``fastsam export`` and ``fastsam convert``.

User mistakes (bad paths, images, prompts, checkpoints, unwritable outputs) end with a one-line
``fastsam: error: ...`` message and exit code 2; outputs are checked before the network runs. When several
images are given, a failure on one (even an unexpected one, exit code 1) never stops the others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fastsam.cli_options import add_inference_arguments, chosen_model, predictor_options
from fastsam.errors import FastSAMError, InvalidInputError
from fastsam.extras import missing_dependency
from fastsam.inference.precision import PRECISIONS
from fastsam.io.image import IMAGE_SUFFIXES

FORMATS = ("json", "png", "labels", "polygons", "overlay")
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1  # a bug (an exception fastsam did not expect), as Python itself exits on one
DEFAULT_CALIBRATION_COUNT = 8  # int8 without --calibration: calibrated on the first images to segment


def _numbers(text: str, count: int, what: str) -> list[float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidInputError(f"{what} {text!r} must be {count} comma-separated numbers") from None
    if len(values) != count:
        raise InvalidInputError(f"{what} {text!r} must be {count} comma-separated numbers, got {len(values)}")
    return values


def expand_inputs(sources: Sequence[str]) -> list[Path]:
    """Files as given, and the image files (by suffix, sorted) of each folder."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidInputError(f"folder {path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            raise InvalidInputError(f"no such file or folder: {path}")
    return paths


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsam", description="Fast Segment Anything in pure PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser("segment", help="segment everything, or what points/boxes select, in images")
    seg.add_argument("images", nargs="+", help="image files and/or folders of images")
    seg.add_argument("--points", nargs="+", metavar="X,Y", help="point prompts in image pixels")
    seg.add_argument("--labels", nargs="+", type=int, metavar="L", help="1 foreground / 0 background, one per point")
    seg.add_argument("--per-point", action="store_true", help="one instance per foreground point, not one merged mask")
    seg.add_argument("--boxes", nargs="+", metavar="X1,Y1,X2,Y2", help="box prompts in image pixels")
    seg.add_argument("--text", action="append", dest="texts", metavar="TEXT",
                     help="text prompt scored with CLIP on each instance (repeatable)")
    seg.add_argument("--text-model", help="CLIP folder or model id (default $FASTSAM_CLIP or openai/clip-vit-base-patch32)")
    seg.add_argument("--text-mode", choices=("best", "topk", "threshold"), help="best instance (default), top k, or all above a threshold")
    seg.add_argument("--text-top-k", type=int, help="instances per text in topk mode")
    seg.add_argument("--text-threshold", type=float, help="score threshold (cosine similarity unless --text-metric probability)")
    seg.add_argument("--text-metric", choices=("cosine", "probability"), help="score the threshold applies to")
    seg.add_argument("--text-crop", choices=("mask", "box"), default="mask", help="crop: mask on white, or the plain box")
    seg.add_argument("--text-wider", action="store_true", help="replace a pick by the largest mask holding 90%% of it")
    add_inference_arguments(seg, precision=False)
    seg.add_argument("--backend", choices=("torch", "onnx", "openvino"), default="torch",
                     help="network runtime; onnx takes an .onnx file as --model, or exports a checkpoint once into "
                          "the cache (pip install -e '.[onnx]'); openvino takes an .xml (IR) or .onnx file, or "
                          "converts a checkpoint once into the cache (pip install -e '.[openvino]')")
    seg.add_argument("--precision", choices=(*PRECISIONS, "int8"), default="fp32",
                     help="network precision: bf16 is faster on CPUs with AVX512-BF16/AMX, masks differ slightly "
                          "from fp32; int8 (--backend openvino) is quantised on --calibration images")
    seg.add_argument("--calibration", nargs="+", default=(), metavar="IMG",
                     help="--precision int8: images to calibrate the quantisation on (default: the first "
                          f"{DEFAULT_CALIBRATION_COUNT} images to segment)")
    seg.add_argument("--out", default="out", help="output folder")
    seg.add_argument("--format", nargs="+", default=["overlay"], choices=FORMATS, dest="formats",
                     help="outputs: json (COCO RLE), png (a mask per instance), labels (label-map PNG), "
                          "polygons (JSON), overlay (picture)")
    seg.add_argument("--contours", action="store_true", help="overlay: draw mask outlines")
    seg.add_argument("--clean-edges", action="store_true", help="overlay: morphological clean-up of mask edges")
    seg.add_argument("--seed", type=int, default=0, help="overlay colour seed")
    seg.add_argument("--quiet", action="store_true", help="no progress bar or per-image lines")

    from fastsam.batch.cli import register as register_batch
    from fastsam.eval.cli import register as register_eval
    from fastsam.serve.cli import register as register_serve
    from fastsam.train.cli import register as register_train
    from fastsam.video.cli import register as register_track

    register_batch(commands)
    register_train(commands)
    register_eval(commands)
    register_serve(commands)
    register_track(commands)

    exp = commands.add_parser("export", help="export the network to ONNX or OpenVINO IR (prompts keep working with "
                                             "--backend onnx / openvino)")
    exp.add_argument("model", help="zoo name or checkpoint path")
    exp.add_argument("dest", help="output .onnx path, or .xml with --format openvino (the weights go beside it, .bin)")
    exp.add_argument("--format", choices=("onnx", "openvino"), default="onnx", help="export format")
    exp.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    exp.add_argument("--quantize", choices=("int8",), help="also write DEST with .int8.onnx (.int8.xml): int8 "
                                                           "weights and activations calibrated on --calibration images")
    exp.add_argument("--calibration", nargs="+", default=(), help="images for int8 calibration")

    conv = commands.add_parser("convert", help="convert a checkpoint to fastsam's safetensors format")
    conv.add_argument("source", help="ultralytics .pt or fastsam .safetensors checkpoint (or a zoo name)")
    conv.add_argument("dest", help="output .safetensors path")
    conv.add_argument("--half", action="store_true", help="store the weights as fp16: half the size, loads as fp32 "
                                                          "(predictions change by fp16 rounding)")
    return parser


def _prompts(args: argparse.Namespace) -> dict:
    prompts: dict = {}
    if args.labels is not None and args.points is None:
        raise InvalidInputError("--labels given without --points")
    if args.points:
        prompts["points"] = [_numbers(p, 2, "point") for p in args.points]
        if args.labels is not None:
            if len(args.labels) != len(args.points):
                raise InvalidInputError(f"{len(args.points)} points but {len(args.labels)} labels; give one label per point")
            prompts["labels"] = args.labels
        prompts["per_point"] = args.per_point
    if args.boxes:
        prompts["boxes"] = [_numbers(b, 4, "box") for b in args.boxes]
    if args.texts:
        prompts.update(texts=args.texts, text_model=args.text_model, text_mode=args.text_mode,
                       text_top_k=args.text_top_k, text_threshold=args.text_threshold, text_metric=args.text_metric,
                       text_crop=args.text_crop, text_wider=args.text_wider, text_device=args.device)
    return prompts


_OUTPUT_NAMES = {"json": "{stem}.json", "png": "{stem}", "labels": "{stem}_labels.png",
                 "polygons": "{stem}_polygons.json", "overlay": "{stem}_overlay.png"}


def _output_path(out: Path, stem: str, fmt: str) -> Path:
    """Where format ``fmt`` of image ``stem`` goes: a file, or for ``png`` a folder of per-instance files."""
    return out / _OUTPUT_NAMES[fmt].format(stem=stem)


def check_outputs(out: Path, stems: Sequence[str], formats: Sequence[str]) -> None:
    """Fail before any work when the outputs cannot be written: ``out`` is a file, is read-only or cannot be
    created, or a file to write is a folder (a folder to fill is a file)."""
    from fastsam.io.atomic import check_writable_folder

    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output folder {str(out)!r} is a file; give a folder with --out")
    check_writable_folder(out)
    for stem in stems:
        for fmt in formats:
            path = _output_path(out, stem, fmt)
            if fmt == "png" and path.exists() and not path.is_dir():
                raise InvalidInputError(f"{str(path)!r} is a file, but --format png writes a folder there")
            if fmt != "png" and path.is_dir():
                raise InvalidInputError(f"{str(path)!r} is a folder, but --format {fmt} writes a file there")


def _write_outputs(result, selection, stem: str, out: Path, args: argparse.Namespace, prompts: dict) -> list[Path]:
    from fastsam.io import export, overlay

    written: list[Path] = []
    source_name = Path(result.source).name if result.source else f"{stem}.png"
    for fmt in dict.fromkeys(args.formats):
        path = _output_path(out, stem, fmt)
        if fmt == "json":
            written.append(export.write_coco_json(selection, path, file_name=source_name))
        elif fmt == "png":
            written.extend(export.write_instance_pngs(selection, path, stem))
        elif fmt == "labels":
            written.append(export.write_label_map_png(selection, path))
        elif fmt == "polygons":
            written.append(export.write_polygons_json(selection, path))
        elif fmt == "overlay":
            written.append(overlay.save_overlay(
                path, result.image, selection, points=prompts.get("points"),
                labels=prompts.get("labels"), boxes=prompts.get("boxes"), contours=args.contours,
                clean_edges=args.clean_edges, seed=args.seed,
            ))
    return written


def _segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fastsam.inference.predictor import Predictor
    from fastsam.model.zoo import load_model

    prompts = _prompts(args)
    paths = expand_inputs(args.images)
    stems = _unique_stems(paths)
    out = Path(args.out)
    check_outputs(out, stems, list(dict.fromkeys(args.formats)))
    model = chosen_model(args, quiet=args.quiet)
    if args.precision == "int8" and args.backend != "openvino":
        raise InvalidInputError("--precision int8 needs --backend openvino")
    if args.backend == "onnx":
        from fastsam.inference.onnx_backend import onnx_backend_for

        network = onnx_backend_for(model)
    elif args.backend == "openvino":
        from fastsam.inference.openvino_backend import openvino_backend_for

        calibration = list(args.calibration) or paths[:DEFAULT_CALIBRATION_COUNT] if args.precision == "int8" else None
        network = openvino_backend_for(model, args.precision, calibration_images=calibration, imgsz=args.imgsz)
    else:
        network = load_model(model, progress=not args.quiet)
    options = predictor_options(args)
    if args.backend != "torch":
        options.pop("precision")  # the backend brings its own
    predictor = Predictor(network, device=args.device, **options)
    failures = crashes = 0
    bar = tqdm(list(zip(paths, stems)), unit="image", disable=args.quiet or len(paths) < 2, file=sys.stderr)
    for path, stem in bar:
        try:
            result = predictor(path)
            selection = result.prompt(**prompts) if prompts else result.everything()
            written = _write_outputs(result, selection, stem, out, args, prompts)
        except FastSAMError as exc:
            failures += 1
            tqdm.write(f"fastsam: error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # noqa: BLE001 - a bug on one image must not cost the user the others
            crashes += 1
            tqdm.write(f"fastsam: internal error on {path}: {type(exc).__name__}: {exc} (please report it)",
                       file=sys.stderr)
            continue
        if not args.quiet:
            tqdm.write(f"{path}: {len(result)} instances, {len(selection)} masks -> {', '.join(str(p) for p in written[:3])}"
                       f"{' ...' if len(written) > 3 else ''}", file=sys.stderr)
    return EXIT_INTERNAL_ERROR if crashes else EXIT_USER_ERROR if failures else 0


def _convert(args: argparse.Namespace) -> int:
    from fastsam.model.zoo import convert_checkpoint

    dest = Path(args.dest)
    if dest.suffix != ".safetensors":
        raise InvalidInputError(f"output must end in .safetensors, got {dest}")
    import torch

    convert_checkpoint(args.source, dest, torch.float16 if args.half else torch.float32)
    print(f"wrote {dest}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fastsam.model.onnx_export import DEFAULT_OPSET, export_onnx, quantize_onnx
    from fastsam.model.zoo import load_model

    dest = Path(args.dest)
    suffix = ".xml" if args.format == "openvino" else ".onnx"
    if dest.suffix != suffix:
        raise InvalidInputError(f"--format {args.format} output must end in {suffix}, got {dest}")
    if args.quantize and not args.calibration:
        raise InvalidInputError("--quantize int8 needs --calibration images (a few like the ones you will segment)")
    if args.format == "openvino":
        from fastsam.inference.openvino_backend import convert_network, quantize_network, save_ir

        network = convert_network(load_model(args.model, progress=True))
        print(f"wrote {save_ir(network, dest)} (+ .bin)")
        if args.quantize:
            quantized = quantize_network(network, [Path(p) for p in args.calibration])
            print(f"wrote {save_ir(quantized, dest.with_suffix('.int8.xml'))} (+ .bin)")
        return 0
    export_onnx(load_model(args.model, progress=True), dest, opset=args.opset or DEFAULT_OPSET)
    print(f"wrote {dest}")
    if args.quantize:
        quantized = dest.with_suffix(".int8.onnx")
        quantize_onnx(dest, quantized, mode="static", calibration_images=[Path(p) for p in args.calibration])
        print(f"wrote {quantized}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return _segment(args)
        if args.command == "convert":
            return _convert(args)
        if args.command == "export":
            return _export(args)
        return args.handler(args)
    except FastSAMError as exc:
        print(f"fastsam: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:
        # Any path that imports an optional package directly still names the extra to install.
        missing = missing_dependency(exc, f"fastsam {args.command}", command=args.command)
        if missing is None:
            raise
        print(f"fastsam: error: {missing}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fastsam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

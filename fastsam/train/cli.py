"""``fastsam train`` (from scratch, fine-tuning, or ``--resume``) and ``fastsam val`` (class-agnostic box and
mask AP / AR with COCOeval); ``fastsam convert-sa1b`` comes from :mod:`fastsam.train.data.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastsam.errors import InvalidInputError
from fastsam.train.trainer import TrainConfig

_KINDS = ("yolo", "coco", "bsds", "sa1b")


def _add_train(commands: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = commands.add_parser(
        "train", help="train a FastSAM / YOLOv8-seg network (class-agnostic), or resume a run",
        description="Train from scratch (--scale, --reg-max) or fine-tune (--model) on a YOLO-seg folder, COCO "
                    "instances JSON, BSDS500 or SA-1B folder. RUN/weights/best.safetensors loads with "
                    "`fastsam segment --model`; `fastsam train --resume RUN` continues an interrupted run.")
    p.add_argument("data", nargs="*", help="training data, one or more folders or COCO JSON files (auto-detected; "
                                           "--kind forces the reader); PATH:SPLIT picks a split per source, e.g. "
                                           "tiny_coco:train2017; PATH@W (or PATH:SPLIT@W) gives its sampling weight")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder (other options ignored but "
                                                   "--epochs, --device, --workers, --threads, --save-every, "
                                                   "--quiet, and with --fork: --mask-margin, --hyp)")
    p.add_argument("--fork", metavar="NEW", help="with --resume: copy RUN's state (weights, optimiser, schedule, "
                                                 "random state) to the new run folder NEW and continue there, RUN "
                                                 "left as it is; --mask-margin and --hyp then change the recipe "
                                                 "from the next epoch (an ablation from the same point)")
    p.add_argument("--out", default=d.out, help=f"run folder (default {d.out})")
    p.add_argument("--kind", choices=_KINDS, help="force the dataset reader")
    p.add_argument("--split", help="subfolder or instances file of DATA (e.g. train2017)")
    p.add_argument("--source-weights", nargs="+", type=float, metavar="W",
                   help="share of each DATA source in an epoch, e.g. 2 1 (or write PATH@W; default: every image "
                        "equally likely, whatever its source)")
    p.add_argument("--bsds-annotator", default="0", metavar="N|all|epoch",
                   help="BSDS500 human segmentation per image: an index (default 0), all (each one its own item), "
                        "or epoch (one drawn per image and epoch)")
    p.add_argument("--model", help="fine-tune from this checkpoint (Ultralytics .pt, fastsam .safetensors, zoo name)")
    p.add_argument("--scale", default=d.scale, choices=("n", "s", "m", "l", "x"), help="from-scratch size")
    p.add_argument("--reg-max", type=int, default=d.reg_max, help="DFL bins (16; FastSAM-x uses 26); with --model, a value above the checkpoint's "
                        "widens its box range (longest box ~2 (reg_max - 1) x 32 px) keeping its predictions")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="training image size (multiple of 32)")
    p.add_argument("--epochs", type=int, help=f"epochs (default {d.epochs}; with --resume: extend the run to this)")
    p.add_argument("--start-epoch", type=int, default=d.start_epoch, metavar="N",
                   help="begin at epoch N of the schedule with a fresh optimiser (and warm-up): continues a run from "
                        "its saved weights (--model RUN/weights/last.safetensors) when its last.pt is lost")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step (all GPUs together)")
    p.add_argument("--nbs", type=int, default=d.nominal_batch, help="nominal batch: gradients accumulated to it")
    p.add_argument("--optimizer", default=d.optimizer, choices=("auto", "SGD", "AdamW"),
                   help="auto: AdamW (lr 0.002*5/(4+nc)) below 10k iterations, else SGD (YOLOv8's rule)")
    p.add_argument("--lr0", type=float, default=d.lr0, help="initial LR for SGD / AdamW")
    p.add_argument("--lrf", type=float, default=d.lrf, help="final LR as a fraction of lr0")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum / AdamW beta1")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--warmup-bias-lr", type=float, default=d.warmup_bias_lr,
                   help=f"LR the biases start their warm-up from (default {d.warmup_bias_lr}, YOLOv8's; the auto "
                        "rule's AdamW uses 0: with an explicit --optimizer AdamW keep it at or below --lr0)")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (default linear)")
    p.add_argument("--close-mosaic", type=int, default=d.close_mosaic, help="epochs at the end without mosaic")
    p.add_argument("--mask-margin", type=float,
                   help="mask loss also on a band around each box, this fraction of the box's size on each side "
                        f"(default {d.mask_margin:g}: YOLOv8's loss inside the box only; >0 keeps masks from "
                        "spilling past their boxes)")
    p.add_argument("--no-augment", action="store_true", help="letterbox only")
    p.add_argument("--hyp", nargs="+", default=[], metavar="KEY=VALUE",
                   help="augmentation overrides, e.g. scale=0.9 mosaic=0.5 (hsv_h, hsv_s, hsv_v, degrees, translate, "
                        "scale, shear, perspective, flipud, fliplr, mosaic, copy_paste: probability of pasting "
                        "another image's instances, default 0)")
    p.add_argument("--no-amp", action="store_true", help="full fp32 (default: fp16 autocast on CUDA, bf16 on CPUs with native bf16)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW activations (NHWC is faster)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--workers", type=int, help="DataLoader workers (default from the core count)")
    p.add_argument("--cache", default=d.cache, choices=("auto", "ram", "off"),
                   help="keep the decoded, resized training images in RAM (auto: when they fit in 4 GiB and a "
                        "quarter of the memory)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default every core)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-val", action="store_true", help="skip validation")
    p.add_argument("--val-data", help="validation data, PATH or PATH:SPLIT (default: DATA, --val-split)")
    p.add_argument("--val-split", help="split of the validation data (e.g. val2017)")
    p.add_argument("--val-every", type=int, default=d.val_every, help="validate every n epochs (and the last)")
    p.add_argument("--val-limit", type=int, help="validate on the first n images only")
    p.add_argument("--save-every", type=int, metavar="N",
                   help="also keep the EMA weights after every N-th epoch as RUN/weights/epoch<N>.safetensors "
                        "(default 0: only last and best; may be set on --resume)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_train)


def _hyp(pairs: list[str]) -> dict[str, float]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise InvalidInputError(f"--hyp expects KEY=NUMBER, got {pair!r}")
    return values


def _bsds_annotator(text: str) -> int | str:
    if text in ("all", "epoch"):
        return text
    if text.isdigit():
        return int(text)
    raise InvalidInputError(f"--bsds-annotator takes an index >= 0, all or epoch, got {text!r}")


def run_train(args: argparse.Namespace) -> int:
    from fastsam.train.trainer import Trainer

    progress = not args.quiet
    if args.fork and not args.resume:
        raise InvalidInputError("--fork NEW copies a run: give the run to copy with --resume RUN")
    if args.resume:
        overrides = {k: getattr(args, k) for k in ("workers", "threads", "save_every") if getattr(args, k) is not None}
        if args.device != "auto":
            overrides["device"] = args.device
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        recipe = {"mask_margin": args.mask_margin} if args.mask_margin is not None else {}
        if args.hyp:
            recipe["hyp"] = _hyp(args.hyp)
        if recipe and not args.fork:
            raise InvalidInputError("--mask-margin and --hyp change a run's recipe: with --resume, give a new run "
                                    "folder with --fork NEW so that RUN stays as it was")
        trainer = Trainer.resume(args.resume, progress=progress, fork_to=args.fork, **overrides, **recipe)
    else:
        if not args.data:
            raise InvalidInputError("give the training DATA, or --resume RUN")
        config = TrainConfig(
            data=args.data[0] if len(args.data) == 1 else args.data, data_kind=args.kind, data_split=args.split,
            source_weights=args.source_weights, bsds_annotator=_bsds_annotator(args.bsds_annotator),
            out=args.out, model=args.model,
            scale=args.scale, reg_max=args.reg_max, imgsz=args.imgsz, batch=args.batch,
            epochs=TrainConfig.epochs if args.epochs is None else args.epochs, start_epoch=args.start_epoch,
            nominal_batch=args.nbs, optimizer=args.optimizer, lr0=args.lr0, lrf=args.lrf, momentum=args.momentum,
            weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
            warmup_bias_lr=args.warmup_bias_lr, cos_lr=args.cos_lr,
            close_mosaic=args.close_mosaic, augment=not args.no_augment,
            mask_margin=TrainConfig.mask_margin if args.mask_margin is None else args.mask_margin,
            hyp=_hyp(args.hyp), amp=not args.no_amp,
            channels_last=not args.no_channels_last, device=args.device, workers=args.workers, cache=args.cache,
            threads=args.threads, seed=args.seed, val=not args.no_val, val_data=args.val_data,
            val_split=args.val_split, val_every=args.val_every, val_limit=args.val_limit,
            save_every=TrainConfig.save_every if args.save_every is None else args.save_every)
        trainer = Trainer(config, progress=progress)
    history = trainer.fit()
    if trainer.main_process and history:
        last = history[-1]
        shown = {k: round(v, 4) for k, v in last.items()
                 if isinstance(v, float) and (k.startswith("val/") or k == "train/loss")}
        print(f"{trainer.run_dir}: epoch {last['epoch']}/{trainer.config.epochs} {json.dumps(shown)}; "
              f"weights in {trainer.weights_dir}", file=sys.stderr)
    return 0


def _add_val(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("val", help="class-agnostic box and mask AP / AR of a model on an annotated set",
                            description="Run the model over every image of DATA (YOLO-seg folder, COCO instances "
                                        "JSON, BSDS500, SA-1B) and score boxes and masks with pycocotools' COCOeval.")
    p.add_argument("model", help="checkpoint (Ultralytics .pt, fastsam .safetensors) or zoo name")
    p.add_argument("data", help="annotated images (auto-detected; --kind forces the reader)")
    p.add_argument("--kind", choices=_KINDS, help="force the dataset reader")
    p.add_argument("--split", help="subfolder or instances file of DATA (e.g. val2017)")
    p.add_argument("--imgsz", type=int, default=640, help="network input long side (multiple of 32)")
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="instances per image (1000 for a full AR@1000)")
    p.add_argument("--retina", action="store_true", help="masks at image resolution (slower, slightly finer)")
    p.add_argument("--limit", type=int, help="only the first n images")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--json", metavar="PATH", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_val)


def run_val(args: argparse.Namespace) -> int:
    from fastsam.io.export import atomic_write_bytes
    from fastsam.train.validate import validate_checkpoint

    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be >= 1, got {args.limit}")
    metrics = validate_checkpoint(args.model, args.data, kind=args.kind, split=args.split, imgsz=args.imgsz,
                                  conf=args.conf, iou=args.iou, max_det=args.max_det, device=args.device,
                                  retina=args.retina, limit=args.limit, progress=not args.quiet)
    for key, value in metrics.items():
        print(f"{key:16s} {value:.4f}")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(metrics, indent=1).encode())
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``train``, ``val`` and (when the data package provides it) ``convert-sa1b``; each sets ``handler``."""
    _add_train(commands)
    _add_val(commands)
    try:
        from fastsam.train.data.cli import register as register_data
    except ImportError:  # the data package's CLI is optional until it exists
        return
    register_data(commands)

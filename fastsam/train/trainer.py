"""The FastSAM / YOLOv8-seg training loop: from scratch or fine-tuning, resumable, single process or DDP.

A run folder holds ``weights/last.pt`` (everything needed to continue: model, EMA, optimiser, AMP scaler, epoch,
RNG states, config; plain tensors and containers only, so it loads with ``torch.load(weights_only=True)`` and
resuming never unpickles code), ``weights/last.safetensors`` and ``weights/best.safetensors`` (the EMA weights,
loadable by ``fastsam segment --model``), ``metrics.csv``, ``metrics.json`` and ``plots.png``. Each is written
atomically at the end of every epoch; ``Trainer.resume(run_dir)`` continues after the last completed epoch and
ends with the same weights as an uninterrupted run (same seed, deterministic device).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fastsam.errors import CheckpointError, InvalidInputError
from fastsam.io.atomic import AtomicFile
from fastsam.io.export import atomic_write_bytes
from fastsam.model.checkpoint import native_bytes
from fastsam.model.config import SCALES, YoloV8SegConfig
from fastsam.model.head import STRIDES
from fastsam.model.yolov8_seg import YoloV8Seg
from fastsam.train.ema import ModelEMA, unwrap
from fastsam.train.losses import LOSS_NAMES, LossGains, SegmentationLoss, check_mask_margin
from fastsam.train.optim import (OPTIMIZERS, WarmupSchedule, build_optimizer, resolve_optimizer,
                                 warmup_iterations)

CHECKPOINT_FORMAT = "fastsam-train-1"
CACHE_MODES = ("auto", "ram", "off")
#: "auto" caches a training set whose images, resized, fit in this many bytes (and in a quarter of the RAM).
CACHE_AUTO_BYTES = 4 << 30


@dataclass
class TrainConfig:
    """Settings of a run; defaults are the YOLOv8 / FastSAM recipe (Ultralytics' default hyperparameters)."""

    data: str | list[str] = ""  # training set(s): paths open_source detects, each optionally PATH:SPLIT
    data_kind: str | None = None  # force the reader: yolo, coco, bsds or sa1b
    source_weights: list[float] | None = None  # share of each source in an epoch (or PATH@W); None: uniform images
    bsds_annotator: int | str = 0  # BSDS500 human segmentation: an index, "all" (each its own item), "epoch" (drawn)
    data_split: str | None = None  # subfolder / instances file of `data` (e.g. train2017)
    out: str = "runs/train"  # run folder
    model: str | None = None  # fine-tune from this checkpoint (else from scratch at `scale`)
    scale: str = "n"
    reg_max: int = 16
    imgsz: int = 640
    epochs: int = 100
    # Begin at this epoch of the schedule with a fresh optimiser: continues a run from its weights (--model) when
    # its last.pt is lost. LR, mosaic and data order follow the schedule; the warm-up is run again.
    start_epoch: int = 0
    batch: int = 16
    nominal_batch: int = 64  # gradients are accumulated over ~nominal_batch / batch batches
    optimizer: str = "auto"  # auto (YOLOv8's rule), SGD or AdamW
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    cos_lr: bool = False
    close_mosaic: int = 10  # no mosaic in the last epochs
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5
    topk: int = 10
    mask_margin: float = 0.0  # mask loss also outside the box, this fraction of its size (0: YOLOv8's crop)
    mask_ratio: int = 4
    augment: bool = True
    hyp: dict = field(default_factory=dict)  # AugmentConfig overrides, e.g. {"scale": 0.9, "mosaic": 0.5}
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    clip_norm: float = 10.0
    amp: bool = True  # mixed precision: fp16 with loss scaling on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16/AMX)
    channels_last: bool = True  # NHWC activations: oneDNN / cuDNN convolutions run faster (~18% on a 2-core CPU)
    device: str = "auto"  # auto: cuda when available (LOCAL_RANK under torchrun), else cpu
    workers: int | None = None  # DataLoader workers (default: from the core count)
    cache: str = "auto"  # decoded, resized images in RAM: "ram", "off", "auto" (ram when under CACHE_AUTO_BYTES)
    threads: int | None = None  # torch CPU threads (default: every core, shared among DDP processes)
    seed: int = 0
    val: bool = True
    val_data: str | None = None  # default: the training set
    val_split: str | None = None  # default: data_split when validating on the training set
    val_every: int = 1  # validate every n epochs (and always after the last)
    val_limit: int | None = None  # validate on the first n images only
    val_conf: float = 0.001
    val_iou: float = 0.7
    val_max_det: int = 300
    plots: bool = True  # plots.png after each validation and at the end
    save_every: int = 0  # also keep the EMA weights after every n-th epoch: weights/epoch<N>.safetensors (0: never)

    def check(self) -> "TrainConfig":
        """Raise InvalidInputError for settings out of range; returns self."""
        for name in ("imgsz", "epochs", "batch", "nominal_batch", "reg_max", "mask_ratio", "val_every", "topk",
                     "val_max_det"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if self.imgsz % max(STRIDES):
            raise InvalidInputError(f"imgsz must be a multiple of {max(STRIDES)}, got {self.imgsz}")
        if self.reg_max < 2:
            raise InvalidInputError(f"reg_max must be >= 2, got {self.reg_max}")
        if self.scale not in SCALES:
            raise InvalidInputError(f"scale must be one of {sorted(SCALES)}, got {self.scale!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInputError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("lr0", "lrf"):
            if not 0 < getattr(self, name) <= 1:
                raise InvalidInputError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("momentum", "warmup_momentum", "ema_decay", "val_conf", "val_iou"):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidInputError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs", "warmup_bias_lr", "close_mosaic", "clip_norm", "ema_tau",
                     "box", "cls", "dfl"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_mask_margin(self.mask_margin)
        if self.cache not in CACHE_MODES:
            raise InvalidInputError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.workers is not None and self.workers < 0:
            raise InvalidInputError(f"workers must be >= 0, got {self.workers}")
        if not isinstance(self.hyp, dict):
            raise InvalidInputError(f"hyp must be a dict of augmentation settings, got {self.hyp!r:.80}")
        if isinstance(self.data, (list, tuple)):
            if not all(isinstance(item, str) and item for item in self.data):
                raise InvalidInputError(f"data must be a path or a list of paths, got {self.data!r:.120}")
            self.data = list(self.data)
        elif not isinstance(self.data, str):
            raise InvalidInputError(f"data must be a path or a list of paths, got {self.data!r:.120}")
        from fastsam.train.data.bsds import ANNOTATOR_MODES
        from fastsam.train.data.sources import source_weights

        self.source_weights = source_weights(self.data, self.source_weights) if self.data else self.source_weights
        if self.bsds_annotator not in ANNOTATOR_MODES and (
                isinstance(self.bsds_annotator, bool) or not isinstance(self.bsds_annotator, int)
                or self.bsds_annotator < 0):
            raise InvalidInputError(f"bsds_annotator must be an index >= 0 or one of {ANNOTATOR_MODES}, "
                                    f"got {self.bsds_annotator!r}")
        if isinstance(self.save_every, bool) or not isinstance(self.save_every, int) or self.save_every < 0:
            raise InvalidInputError(f"save_every must be an integer >= 0 (0: only last and best), got {self.save_every!r}")
        if isinstance(self.start_epoch, bool) or not isinstance(self.start_epoch, int) or not (
                0 <= self.start_epoch < self.epochs):
            raise InvalidInputError(f"start_epoch must be an integer in [0, epochs={self.epochs}), "
                                    f"got {self.start_epoch!r}")
        if self.val_limit is not None and self.val_limit < 1:
            raise InvalidInputError(f"val_limit must be >= 1, got {self.val_limit}")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def initialise_detection_biases(model: YoloV8Seg) -> None:
    """YOLOv8's prior: box-branch biases 1, class biases log(5 / nc / (640 / stride)^2) (about 5 objects per
    640-pixel image at the start, so the class loss does not begin by fighting thousands of easy negatives)."""
    head = model.head
    with torch.no_grad():
        for box_branch, cls_branch, stride in zip(head.box_convs, head.cls_convs, STRIDES):
            box_branch[-1].bias.fill_(1.0)
            cls_branch[-1].bias.fill_(math.log(5 / head.num_classes / (640 / stride) ** 2))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps, module.momentum = 1e-3, 0.03


def build_training_model(config: TrainConfig) -> YoloV8Seg:
    """A fresh class-agnostic network at ``config.scale`` / ``reg_max``, or the fine-tuning checkpoint (its box
    range widened when ``reg_max`` is above the checkpoint's; a smaller ``reg_max`` keeps the checkpoint's)."""
    if config.model:
        from fastsam.model.zoo import load_model

        model = load_model(config.model)
        if config.reg_max > model.cfg.reg_max:  # a longer box range than the checkpoint's: same predictions
            from fastsam.model.widen import widen_reg_max

            model = widen_reg_max(model, config.reg_max)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.03
    else:
        model = YoloV8Seg(YoloV8SegConfig.from_scale(config.scale, num_classes=1, reg_max=config.reg_max))
        initialise_detection_biases(model)
    return model.train()


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX, read from /proc/cpuinfo): there oneDNN runs
    bf16 convolutions about twice as fast as fp32; elsewhere bf16 is emulated and no faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _auto_cache_limit() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0
    return min(CACHE_AUTO_BYTES, memory // 4)


@contextmanager
def _single_threaded_opencv() -> Iterator[None]:
    """OpenCV on one thread while an epoch runs, so that the DataLoader workers forked meanwhile inherit it:
    the compute threads own the cores, and a worker spawning threads of its own oversubscribes them (each of
    OpenMP's barriers then waits on a descheduled thread). Set here, not in the worker: changing OpenCV's
    thread count in a forked child whose parent used its pool hangs."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) for a plain process."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("WORLD_SIZE", "1"))


def _wait_for_file(path: Path, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise CheckpointError(f"{path} did not appear within {timeout_s:.0f} s (did the first process fail?)")
        time.sleep(0.5)


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                       "has_gauss": int(numpy_state[3]), "cached": float(numpy_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(v) for v in state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_torch(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


COPY_CHUNK_BYTES = 16 << 20
# last.pt last: a fork cut short holds no last.pt, so it is no run yet and can be forked again
FORKED_FILES = ("weights/last.safetensors", "weights/best.safetensors", "metrics.json", "metrics.csv",
                "weights/last.pt")


def fork_run(run_dir: str | Path, new_dir: str | Path) -> Path:
    """Copy the state of the run in ``run_dir`` (its last.pt, last and best weights, metrics) to ``new_dir``, which
    must not hold a run yet; returns ``new_dir``. The per-epoch weights stay behind."""
    source, target = Path(run_dir), Path(new_dir)
    if source.resolve() == target.resolve():
        raise InvalidInputError(f"cannot fork {source} onto itself: give a new run folder")
    if (target / "weights" / "last.pt").exists():
        raise InvalidInputError(f"cannot fork into {target}: it holds a run already (resume that one instead)")
    for name in FORKED_FILES:
        if (source / name).is_file():  # streamed: a large model's last.pt is ~1 GB
            with open(source / name, "rb") as original, AtomicFile(target / name) as copy:
                shutil.copyfileobj(original, copy.handle, COPY_CHUNK_BYTES)
    return target


class Trainer:
    """Trains a :class:`YoloV8Seg` to :class:`TrainConfig`.

    ``dataset`` (a ``fastsam.train.data.TrainingDataset``-like torch Dataset with a ``mosaic`` attribute) and
    ``val_source`` (an InstanceSource) default to those built from ``config.data`` / ``config.val_data``;
    ``collate_fn`` to ``fastsam.train.data.collate_batch``.
    """

    def __init__(self, config: TrainConfig, dataset: Any = None, val_source: Any = None, progress: bool = True,
                 collate_fn: Any = None) -> None:
        self.config = config.check()
        self.collate_fn = collate_fn
        self.progress = progress
        self.rank, self.local_rank, self.world = _distributed()
        self.main_process = self.rank == 0
        self.device = self._pick_device(config.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // self.world))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self._seed(config.seed + self.rank)

        self.dataset = dataset if dataset is not None else self._build_dataset()
        if len(self.dataset) == 0:
            raise InvalidInputError(f"the training data {config.data!r} holds no images")
        if config.source_weights is not None and len(config.source_weights) > 1:
            sources = getattr(getattr(self.dataset, "source", None), "sources", None)
            if sources is None or len(sources) != len(config.source_weights):
                raise InvalidInputError(f"{len(config.source_weights)} source weights, but the training dataset "
                                        f"is not made of that many sources")
        self._val_source = val_source
        self.run_dir = Path(config.out)
        self.weights_dir = self.run_dir / "weights"
        self.model = self._placed(build_training_model(config))
        self.model_cfg: YoloV8SegConfig = self.model.cfg
        self.ema = ModelEMA(self.model, config.ema_decay, config.ema_tau)
        self.batch_per_rank = max(1, config.batch // self.world)
        self.accumulate = max(round(config.nominal_batch / config.batch), 1)
        self.batches_per_epoch = math.ceil(len(self.dataset) / (self.batch_per_rank * self.world))
        iterations = math.ceil(len(self.dataset) / max(config.batch, config.nominal_batch)) * config.epochs
        self.optim_settings = resolve_optimizer(config.optimizer, config.lr0, config.momentum,
                                                config.warmup_bias_lr, self.model_cfg.num_classes, iterations)
        # Losses are summed (times the batch size) over `accumulate` batches: decay scaled to match, as YOLOv8.
        decay = config.weight_decay * config.batch * self.accumulate / config.nominal_batch
        self.optimizer = build_optimizer(self.model, self.optim_settings, decay)
        self.schedule = WarmupSchedule(
            base_lr=self.optim_settings.lr, epochs=config.epochs, lrf=config.lrf, cosine=config.cos_lr,
            warmup_iters=warmup_iterations(config.warmup_epochs, self.batches_per_epoch),
            warmup_bias_lr=self.optim_settings.warmup_bias_lr, warmup_momentum=config.warmup_momentum,
            momentum=self.optim_settings.momentum, accumulate=self.accumulate,
            first_iteration=config.start_epoch * self.batches_per_epoch)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        # bf16 keeps fp32's range, so CPU autocast needs no loss scaling; it roughly halves a step on AMX CPUs.
        self.use_cpu_bf16 = bool(config.amp and self.device.type == "cpu" and cpu_has_native_bf16())
        self.criterion = self._criterion(self.model_cfg)
        self.start_epoch = config.start_epoch
        self.last_step = self.schedule.first_iteration - 1
        # The EMA's decay ramp goes on from the optimiser steps the earlier epochs made.
        self.ema.updates = config.start_epoch * math.ceil(self.batches_per_epoch / self.accumulate)
        self.best_fitness: float | None = None
        self.history: list[dict] = []
        self.train_model: nn.Module = self.model
        if self.world > 1:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ----------------------------------------------------------------------------------------------- setup
    def _pick_device(self, name: str) -> torch.device:
        if name == "auto":
            name = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise InvalidInputError(f"unknown device {name!r}: {exc}") from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InvalidInputError(f"device {name!r} requested but CUDA is not available")
            if self.world > 1:
                device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def _placed(self, model: YoloV8Seg) -> YoloV8Seg:
        """``model`` on the training device, in the training memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.config.channels_last else model

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build_dataset(self) -> Any:
        from fastsam.train.data import AugmentConfig, TrainingDataset, open_sources

        if not self.config.data:
            raise InvalidInputError("no training data given")
        config = self.config
        known = {f.name for f in fields(AugmentConfig)}
        unknown = sorted(set(config.hyp) - known)
        if unknown:
            raise InvalidInputError(f"unknown augmentation setting(s) {unknown}; known: {sorted(known)}")
        source = open_sources(config.data, config.data_kind, config.data_split, config.bsds_annotator)
        dataset = TrainingDataset(source, imgsz=config.imgsz, augment=config.augment,
                                  hyp=AugmentConfig(**config.hyp), mask_ratio=config.mask_ratio, seed=config.seed)
        if config.cache == "ram" or (config.cache == "auto" and dataset.cache_bytes() <= _auto_cache_limit()):
            # Decoded once here, before the workers fork and share it: a mosaic item reads four images, and
            # decoding them (or tracing RLE outlines) each time costs more than the rest of its augmentation.
            dataset.cache = True
            dataset.preload(progress=self.progress and self.main_process)
        return dataset

    @property
    def val_source(self) -> Any:
        if self._val_source is None:
            from fastsam.train.data import open_sources

            config = self.config
            if config.val_data:
                self._val_source = open_sources(config.val_data, split=config.val_split)
            else:
                self._val_source = open_sources(config.data, config.data_kind, config.val_split or config.data_split)
        return self._val_source

    def _workers(self) -> int:
        if self.config.workers is not None:
            return self.config.workers
        # Augmentation is light next to the network on CPU: one worker per two cores leaves the rest to torch.
        cores = os.cpu_count() or 1
        return min(8, max(1, cores // (2 * self.world))) if self.device.type == "cuda" else max(1, cores // 2)

    def _loader(self, epoch: int) -> torch.utils.data.DataLoader:
        collate = self.collate_fn
        if collate is None:
            from fastsam.train.data import collate_batch as collate

        # A generator seeded per epoch fixes both the order and the workers' seeds: resuming replays them.
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        sampler = None
        weights = self.config.source_weights
        if weights is not None and len(weights) > 1:
            from fastsam.train.data.sampling import SourceWeightedSampler

            lengths = [len(source) for source in self.dataset.source.sources]
            sampler = SourceWeightedSampler(lengths, weights, self.config.seed + epoch, self.rank, self.world)
        elif self.world > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(self.dataset, shuffle=True, seed=self.config.seed)
            sampler.set_epoch(epoch)
        workers = self._workers()
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_per_rank, shuffle=sampler is None, sampler=sampler,
            num_workers=workers, collate_fn=collate, generator=generator, drop_last=False,
            pin_memory=self.device.type == "cuda", persistent_workers=False)

    # -------------------------------------------------------------------------------------------- training
    def fit(self, stop_after_epochs: int | None = None) -> list[dict]:
        """Train until ``config.epochs`` (or, to simulate an interruption, after ``stop_after_epochs`` more
        epochs). Returns the per-epoch history (losses, learning rate, timings, validation metrics)."""
        end = self.config.epochs
        if stop_after_epochs is not None:
            end = min(end, self.start_epoch + stop_after_epochs)
        for epoch in range(self.start_epoch, end):
            row = self._train_epoch(epoch)
            if self._should_validate(epoch):
                started = time.perf_counter()
                row.update({f"val/{k}": v for k, v in self._validate().items()})
                row["time/val_s"] = time.perf_counter() - started
            self.history.append(row)
            self.start_epoch = epoch + 1
            self._save(row, plot=self.config.plots and ("time/val_s" in row or epoch + 1 == end))
            if self.world > 1:
                torch.distributed.barrier()
        return self.history

    def _should_validate(self, epoch: int) -> bool:
        last = epoch + 1 == self.config.epochs
        return self.config.val and self.main_process and (last or (epoch + 1) % self.config.val_every == 0)

    def _train_epoch(self, epoch: int) -> dict:
        with _single_threaded_opencv():
            return self._train_epoch_steps(epoch)

    def _train_epoch_steps(self, epoch: int) -> dict:
        config = self.config
        if hasattr(self.dataset, "mosaic"):
            self.dataset.mosaic = bool(config.augment) and epoch < config.epochs - config.close_mosaic
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.train_model.train()
        loader = self._loader(epoch)
        totals = torch.zeros(len(LOSS_NAMES))
        seen = skipped = 0
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", file=sys.stderr,
                   disable=not (self.progress and self.main_process), leave=True)
        for i, batch in enumerate(bar):
            step = i + self.batches_per_epoch * epoch
            accumulate = self.schedule.apply(self.optimizer, step, epoch)
            images = batch["images"].to(self.device, non_blocking=True)
            # collate_batch makes them channels-last already: then this is free.
            images = images.contiguous(memory_format=torch.channels_last if self.config.channels_last
                                       else torch.contiguous_format)
            with self._autocast():
                out = self.train_model(images)
            loss, items = self.criterion(out, batch)
            # With AMP the scaler skips steps with non-finite gradients on every rank; without it, drop the batch.
            if not self.use_amp and not torch.isfinite(loss):
                skipped += 1
                if self.world > 1 or skipped > max(3, len(loader) // 10):
                    raise FloatingPointError(f"non-finite loss in {skipped} batches of epoch {epoch + 1} "
                                             f"(last: {items.tolist()}); lower the learning rate")
                tqdm.write(f"epoch {epoch + 1}, batch {i}: non-finite loss {items.tolist()}, batch skipped",
                           file=sys.stderr)
                continue
            self.scaler.scale(loss * self.world).backward()  # DDP averages gradients; YOLOv8 sums them
            if step - self.last_step >= accumulate:
                self._optimizer_step()
                self.last_step = step
            totals += items.cpu()
            seen += 1
            means = totals / seen
            bar.set_postfix({name: f"{v:.3f}" for name, v in zip(LOSS_NAMES, means.tolist())})
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"train/{name}_loss": float(v) for name, v in zip(LOSS_NAMES, (totals / max(seen, 1)).tolist())})
        row["train/loss"] = float(totals.sum() / max(seen, 1))
        row["lr"] = float(self.optimizer.param_groups[1]["lr"])
        row["train/skipped_batches"] = skipped
        row["time/train_s"] = time.perf_counter() - started
        return row

    def _autocast(self) -> torch.autocast:
        if self.use_cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)

    def _validate(self) -> dict[str, float]:
        from fastsam.train.validate import validate

        return validate(self.ema.module, self.val_source, imgsz=self.config.imgsz, conf=self.config.val_conf,
                        iou=self.config.val_iou, max_det=self.config.val_max_det, device=str(self.device),
                        limit=self.config.val_limit, progress=self.progress)

    # --------------------------------------------------------------------------------------- checkpointing
    def state(self) -> dict:
        """Everything :meth:`resume` needs, as tensors, numbers, strings and containers only."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "model_config": self.model_cfg.to_dict(),
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.start_epoch,
            "last_step": self.last_step,
            "best_fitness": self.best_fitness,
            "history": self.history,
            "rng": _rng_state(),
        }

    def _save(self, row: dict, plot: bool) -> None:
        if not self.main_process:
            return
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        fitness = row.get("val/mask/AP50")
        improved = fitness is not None and (self.best_fitness is None or fitness >= self.best_fitness)
        if improved:
            self.best_fitness = float(fitness)
        ema_weights = native_bytes(self.ema.module)
        atomic_write_bytes(self.weights_dir / "last.safetensors", ema_weights)
        epoch = int(row["epoch"])
        if self.config.save_every and epoch % self.config.save_every == 0:
            atomic_write_bytes(self.weights_dir / f"epoch{epoch}.safetensors", ema_weights)
        if improved or not (self.weights_dir / "best.safetensors").exists():
            atomic_write_bytes(self.weights_dir / "best.safetensors", ema_weights)
        _save_torch(self.state(), self.weights_dir / "last.pt")
        self._write_logs(plot)

    def _write_logs(self, plot: bool) -> None:
        from fastsam.train.plots import plot_history

        atomic_write_bytes(self.run_dir / "metrics.json", json.dumps(self.history, indent=1).encode())
        columns: list[str] = []
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_bytes(self.run_dir / "metrics.csv", text.getvalue().encode())
        if plot:
            plot_history(self.history, self.run_dir / "plots.png")

    @classmethod
    def resume(cls, run_dir: str | Path, dataset: Any = None, val_source: Any = None, progress: bool = True,
               collate_fn: Any = None, fork_to: str | Path | None = None, **overrides: Any) -> "Trainer":
        """Continue the run in ``run_dir`` from its last completed epoch (``overrides`` may change, e.g.,
        ``epochs`` to extend it, or ``device``; a ``hyp`` override is merged into the run's).

        ``fork_to``: first copy the run's state to this new folder and continue there, leaving ``run_dir`` as it
        is: an ablation from the same weights, optimiser, schedule and random state (e.g. with ``mask_margin``)."""
        path = Path(run_dir) / "weights" / "last.pt"
        if not path.is_file():
            raise InvalidInputError(f"cannot resume: {path} not found (is {run_dir} a training run folder?)")
        if fork_to is not None:
            if _distributed()[0] == 0:
                fork_run(run_dir, fork_to)
            else:  # under torchrun the first process copies; the others read its copy
                _wait_for_file(Path(fork_to) / "weights" / "last.pt")
            run_dir, path = Path(fork_to), Path(fork_to) / "weights" / "last.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or foreign files
            raise CheckpointError(f"cannot read training checkpoint {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a fastsam training checkpoint")
        # The run folder may have moved; the starting checkpoint is no longer needed (its weights are in `state`).
        values = {**state["config"], **overrides, "out": str(run_dir), "model": None}
        if "hyp" in overrides:
            values["hyp"] = {**state["config"].get("hyp", {}), **overrides["hyp"]}
        trainer = cls(TrainConfig.from_dict(values), dataset=dataset, val_source=val_source, progress=progress,
                      collate_fn=collate_fn)
        model_cfg = YoloV8SegConfig.from_dict(state["model_config"])
        if model_cfg != trainer.model_cfg:  # fine-tuned runs: rebuild the architecture of the checkpoint
            trainer._rebuild(model_cfg)
        trainer.model.load_state_dict(state["model"])
        trainer.ema.load_state_dict(state["ema"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scaler.load_state_dict(state["scaler"])
        trainer.start_epoch = int(state["epoch"])
        trainer.last_step = int(state["last_step"])
        trainer.best_fitness = state["best_fitness"]
        trainer.history = list(state["history"])
        _set_rng_state(state["rng"])
        return trainer

    def _criterion(self, model_cfg: YoloV8SegConfig) -> SegmentationLoss:
        config = self.config
        return SegmentationLoss(model_cfg.num_classes, model_cfg.reg_max, LossGains(config.box, config.cls, config.dfl),
                                config.topk, mask_margin=config.mask_margin)

    def _rebuild(self, model_cfg: YoloV8SegConfig) -> None:
        self.model = self._placed(YoloV8Seg(model_cfg).train())
        self.model_cfg = model_cfg
        self.ema = ModelEMA(self.model, self.config.ema_decay, self.config.ema_tau)
        decay = self.config.weight_decay * self.config.batch * self.accumulate / self.config.nominal_batch
        self.optimizer = build_optimizer(self.model, self.optim_settings, decay)
        self.criterion = self._criterion(model_cfg)
        self.train_model = self.model
        if self.world > 1:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

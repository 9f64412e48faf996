"""Training of the restoration head (restore.py) on a registered model's decoder.

    python -m rescodec.training.head --base-model rescodec-x2-avif-v1 \
        --data ../shared/datasets/train --out runs/x2-head --minutes 50 --threads 1

Crops of the training photos go through the real codec (the base model at its
defaults, LR quality drawn from --lr-quality-min..max per crop), and the head
learns, with L2, to map the decoder's uint8 output back to the crop.  The
flow is frozen: the encoder and the files stay the same, so the gain of the
head is a gain at equal bytes.  A share of the crops (--val-fraction) is held
out, and the log reports the head's gain on them.  The checkpoint
(OUT/checkpoint.pt) is the base flow with the head, in the training's format,
for `rescodec export`.  With --scale 1 there is no base flow: the crops go
through full-size AVIF (lossy_lr, the files' settings), and the head learns to
restore those decodes, an x1 model.
"""
from __future__ import annotations

import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import codec, lossy_lr, stop_signals, weights
from ..errors import ImageInputError
from ..flow import FlowConfig, RescaleFlow
from ..restore import block_dilations
from ..settings import EncodeSettings
from ..evaluation.metrics import psnr
from ..image_folders import list_images, load_rgb
from ..tiling import to_uint8
from .train import (DEVICES, NoImages, OneLineParser, _add_dataclass_args, catch_stop_signals, cosine_lr,
                    drop_empty_run, read_init, restore_signals, save_checkpoint)


@dataclass
class HeadConfig:
    base_model: str = ""        # registered model whose decoded output the head restores
    scale: int = 0              # 1: no base model, the head restores full-size AVIF decodes (x1);
                                # then --width 0 writes the x1 model with no head
    data: list = field(default_factory=list)   # folders of training photos
    photos: int = 0             # photos to take crops from (0: all)
    crops_per_photo: int = 2    # random crops per photo, each through the codec once
    crop: int = 192             # HR crop side (a multiple of the scale)
    lr_quality_min: int = 0     # each crop's LR (AVIF) quality is drawn from min..max
    lr_quality_max: int = 80    # the highest LR quality drawn
    val_fraction: float = 0.05  # share of the crops held out to measure the gain
    width: int = 48             # head width (FlowConfig.head_width)
    blocks: int = 4             # head residual blocks (FlowConfig.head_blocks)
    dilated: int = 0            # of them, the last ones dilated (FlowConfig.head_dilated)
    dilation: int = 1           # their dilation (FlowConfig.head_dilation)
    patch: int = 96             # HR patch side per training sample
    batch: int = 16             # patches per step
    lr: float = 5e-4            # Adam, cosine over --minutes to lr_min
    lr_min: float = 1e-6        # the cosine schedule's end
    minutes: float = 50.0       # training time (the crops' preparation not counted)
    eval_every_s: float = 300.0  # seconds between held-out evaluations and checkpoints
    threads: int = 1            # torch threads
    workers: int = 1            # processes putting the crops through the codec
    device: str = "cpu"         # cpu, or cuda: the head trains on the GPU (the codec stays on the CPU)
    seed: int = 0               # RNG seed (crops, qualities, patches, init)
    dihedral: bool = False      # each patch in one of the square's 8 orientations, not only mirrored
    init_from: str = ""         # a weights file with a head of this width; blocks past --blocks are dropped
    # copied from the base model, for the exported model's card (weights.card)
    lr_codec: str = "avif"      # the base model's LR codec (set from the base model)
    mask_threshold: float = 0.0  # the base model's mask threshold T (set from the base model)
    z_temperature: float = 0.0  # the base model's highest trained Z temperature (set from the base model)
    temperature: float = 0.0    # the Z temperature decoded at, the base model's default (set from the base model)

    def validate(self) -> None:
        if self.scale not in (0, 1) or (self.scale == 1) == bool(self.base_model):
            raise ValueError("give --base-model, or --scale 1 (no base model) for an x1 head")
        if self.scale == 1:
            if self.width == 0:     # no head: nothing to train
                return
            self._validate_training(2)
            return
        card = weights.card(self.base_model)   # WeightsError when not installed
        if card.defaults.lr_codec != "avif":
            raise ValueError(f"{self.base_model} stores a lossless LR; the head is for an AVIF LR")
        if weights.has_head(weights.entry(self.base_model)):
            # its decodes are already restored: a head trained on them would run after its own
            raise ValueError(f"{self.base_model} already has a restoration head; give its base flow's "
                             "model, and its head with --init-from")
        self._validate_training(card.scale)

    def _validate_training(self, unit: int) -> None:
        if self.crop % unit or self.patch % unit or self.patch > self.crop:
            raise ValueError(f"--crop and --patch must be multiples of {unit}, patch <= crop")
        for q in (self.lr_quality_min, self.lr_quality_max):
            EncodeSettings(lr_quality=q).validate()
        if self.lr_quality_min > self.lr_quality_max:
            raise ValueError("--lr-quality-min is above --lr-quality-max")
        for what, ok in (("--val-fraction must be between 0 and 1", 0 < self.val_fraction < 1),
                         ("--width and --blocks must be at least 1", self.width >= 1 and self.blocks >= 1),
                         ("--minutes must be above 0", self.minutes > 0),
                         ("--batch and --crops-per-photo must be at least 1",
                          self.batch >= 1 and self.crops_per_photo >= 1)):
            if not ok:
                raise ValueError(what)
        FlowConfig(**_head_fields(self)).validate()   # the head's shape: dilations included
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.device not in DEVICES or (self.device == "cuda" and not torch.cuda.is_available()):
            raise ValueError(f"--device must be one of {', '.join(DEVICES)} (cuda where PyTorch sees a GPU), "
                             f"got {self.device!r}")


FROM_BASE = ("lr_codec", "mask_threshold", "z_temperature", "temperature")   # HeadConfig's copies


class Stopped(Exception):
    """A stop signal while the crops went through the codec: nothing trained."""
    def __init__(self, signum: int, said: str):
        super().__init__(said)
        self.signum = signum


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children: prepare()'s
    worker processes put the crops through the codec."""
    try:
        import resource   # POSIX: Windows has no rusage of children, and counts this process alone
    except ImportError:
        return time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def _worker_init() -> None:   # a stop sent to the whole group (Ctrl-C, a closed terminal,
    for sig in stop_signals.STOP:  # a job scheduler) is the parent's to act on
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)


def prepare(cfg: HeadConfig, rng: random.Random, stop=()):
    """-> (decoded, originals) uint8 (N, crop, crop, 3): crops through the
    codec.  `stop`: catch_stop_signals()'s list; a signal ends it (Stopped)."""
    paths = list_images(cfg.data)
    rng.shuffle(paths)
    jobs = []
    for p in paths[: cfg.photos or None]:
        rgb = load_rgb(p)
        h, w = rgb.shape[:2]
        if min(h, w) < cfg.crop:
            continue
        for _ in range(cfg.crops_per_photo):
            i, j = rng.randrange(h - cfg.crop + 1), rng.randrange(w - cfg.crop + 1)
            crop = np.ascontiguousarray(rgb[i:i + cfg.crop, j:j + cfg.crop])
            jobs.append((crop, cfg.base_model, rng.randint(cfg.lr_quality_min, cfg.lr_quality_max)))
    if len(jobs) < 2:
        raise NoImages(f"no photos of at least {cfg.crop}x{cfg.crop} in {', '.join(cfg.data)}")
    xs = []
    if cfg.workers > 1:   # processes: the encoder holds the GIL in places; spawn, not fork, under torch
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        try:
            with ProcessPoolExecutor(cfg.workers, multiprocessing.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                for x in pool.map(through_codec, jobs, chunksize=8):
                    xs.append(x)
                    if stop:
                        pool.shutdown(cancel_futures=True)
                        break
        except BrokenProcessPool:   # a worker killed by the signal, before it could ignore it
            if not stop:
                raise
    else:
        for j in jobs:
            xs.append(through_codec(j))
            if stop:
                break
    if stop:
        raise Stopped(stop[0], f"stopped by {signal.Signals(stop[0]).name} while the crops went through "
                      f"the codec ({len(xs)} of {len(jobs)}): nothing trained")
    return np.stack(xs), np.stack([j[0] for j in jobs])


def through_codec(job) -> np.ndarray:
    """(crop, model, LR quality) -> the crop as the decoder gives it; model
    "": as AVIF gives it, what an x1 model's head restores."""
    crop, model, q = job
    if not model:
        return lossy_lr.decode(lossy_lr.encode(crop, q), crop.shape)
    return codec.decode_array(codec.encode_ex(crop, EncodeSettings(model=model, lr_quality=q)).data)[0]


def to_float(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def held_out_gain(net: RescaleFlow, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Mean PSNR of the decoder's output and of the head's, over held-out crops (uint8, as users get them)."""
    before, after = [], []
    for i in range(len(x)):
        a, b = to_uint8(x[i:i + 1]), to_uint8(y[i:i + 1])
        before.append(psnr(b, a))
        after.append(psnr(b, to_uint8(net.restore(x[i:i + 1]))))
    return {"psnr_decoded": float(np.mean(before)), "psnr_restored": float(np.mean(after)),
            "gain_db": float(np.mean(after) - np.mean(before))}


def _head_fields(cfg: HeadConfig) -> dict:
    """The FlowConfig fields that shape the head."""
    return {"head_width": cfg.width, "head_blocks": cfg.blocks,
            "head_dilated": cfg.dilated, "head_dilation": cfg.dilation}


def train(cfg: HeadConfig, out: Path, log=print, until: float | None = None) -> dict:
    """Train the head; `until`: a wall-clock time (time.time()) that training
    ends by, whatever the crops' preparation took (gpu_finetune's share);
    the learning rate's schedule fits the time left."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.scale == 1:
        flow_cfg = FlowConfig(scale=1, **_head_fields(cfg), z_std=0.0)
        net = RescaleFlow(flow_cfg)
        if not cfg.width:   # an x1 model whose decode is the AVIF decode itself
            save_checkpoint(out / "checkpoint.pt", {
                "flow_config": asdict(flow_cfg), "train_config": asdict(cfg), "step": 0, "elapsed_s": 0.0,
                "cpu_s": 0.0, "history": [], "model": {}})
            log("x1 with no head: nothing to train")
            return {}
    else:
        base_path = weights.weights_dir() / weights.entry(cfg.base_model)["file"]
        base, state = weights.load_checkpoint(base_path, weights_only=True)
        flow_cfg = FlowConfig(**{**state["flow_config"], **_head_fields(cfg)})
        net = RescaleFlow(flow_cfg)
        net.load_state_dict({**base.state_dict(), **net.head.state_dict(prefix="head.")})
    if cfg.init_from:
        saved = read_init(cfg.init_from, weights_only=True)[1]   # main gave its path, not a name
        src = saved["model"]
        # dilation does not change a conv's weights' shape: check it, or a
        # dilated head would load into a plain one (or back) and mean nothing
        fc = saved.get("flow_config") or {}
        theirs = block_dilations(fc.get("head_blocks", 0), fc.get("head_dilated", 0), fc.get("head_dilation", 1))
        have = min(len(theirs), cfg.blocks)
        if theirs[:have] != net.head.dilations[:have]:
            raise ValueError(f"{cfg.init_from}'s head blocks have other dilations than --dilated "
                             f"{cfg.dilated} --dilation {cfg.dilation} gives them")
        head = {k[5:]: v.float() for k, v in src.items() if k.startswith("head.")}
        # a deeper head is cut to its first --blocks blocks, to train a faster one from it
        kept = {k: v for k, v in head.items() if not k.startswith("body.") or int(k.split(".")[1]) < cfg.blocks}
        if len(kept) < len(head):
            log(f"{cfg.init_from}'s head cut to its first {cfg.blocks} blocks")
        added = net.head.load_grown(kept)
        if added:
            log(f"{added} blocks added to {cfg.init_from}'s head, each starting as the identity")
    cpu0, t0 = cpu_seconds(), time.time()
    stop, handlers = catch_stop_signals()   # SIGTERM / SIGINT: finish the step, save, stop
    try:
        xs, ys = prepare(cfg, rng, stop)
    except BaseException:
        restore_signals(handlers)
        raise
    budget = cfg.minutes * 60 if until is None else min(cfg.minutes * 60, until - time.time())
    n_val = max(1, round(len(xs) * cfg.val_fraction))
    device = torch.device(cfg.device)
    net.to(device)
    xv, yv = to_float(xs[:n_val]).to(device), to_float(ys[:n_val]).to(device)
    x, y = to_float(xs[n_val:]).to(device), to_float(ys[n_val:]).to(device)
    log(f"{len(xs)} crops ({n_val} held out) through {cfg.base_model or 'full-size AVIF'} in {time.time() - t0:.0f} s; "
        f"{sum(p.numel() for p in net.head.parameters())} head params")
    for p in net.parameters():
        p.requires_grad_(False)
    net.head.requires_grad_(True)
    opt = torch.optim.Adam(net.head.parameters(), lr=cfg.lr)
    history, step, s = [], 0, net.head.scale
    start, last_eval = time.time(), time.time()

    def checkpoint(elapsed):
        history.append({"step": step, "elapsed_s": round(elapsed, 1),
                        "cpu_s": round(cpu_seconds() - cpu0, 1), **held_out_gain(net, xv, yv)})
        log(json.dumps(history[-1]))
        save_checkpoint(out / "checkpoint.pt", {
            "flow_config": asdict(flow_cfg), "train_config": asdict(cfg), "step": step,
            "elapsed_s": elapsed, "cpu_s": cpu_seconds() - cpu0, "history": history,
            "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}})

    checkpoint(0.0)   # the starting head's gain on these crops: what training must beat
    if budget <= 0:
        log("no time left to train after the crops' preparation")
    while (elapsed := time.time() - start) < budget and not stop:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(elapsed / budget, cfg.lr, cfg.lr_min)
        idx = torch.randint(0, len(x), (cfg.batch,)).to(device)
        i, j = (torch.randint(0, (x.shape[2] - cfg.patch) // s + 1, (2,)) * s).tolist()
        xb, yb = x[idx, :, i:i + cfg.patch, j:j + cfg.patch], y[idx, :, i:i + cfg.patch, j:j + cfg.patch]
        if rng.random() < 0.5:
            xb, yb = xb.flip(3), yb.flip(3)
        if cfg.dihedral:
            k = rng.randrange(4)
            xb, yb = xb.rot90(k, (2, 3)), yb.rot90(k, (2, 3))
        loss = F.mse_loss(net.head(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if time.time() - last_eval > cfg.eval_every_s:
            checkpoint(time.time() - start)
            last_eval = time.time()
    checkpoint(time.time() - start)   # with the signals still caught: a second one cannot lose the run
    restore_signals(handlers)
    if stop:
        log(f"stopped by {signal.Signals(stop[0]).name}")
    return {**history[-1], "stopped_by": stop[0] if stop else None}


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m rescodec.training.head", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoint.pt")
    p.add_argument("--until", type=float, default=None,
                   help="end training by this Unix time (seconds), whatever the crops' preparation took")
    _add_dataclass_args(p, HeadConfig, skip=FROM_BASE)
    a = vars(p.parse_args(argv))
    cfg = HeadConfig(**{f.name: a[f.name] for f in fields(HeadConfig) if f.name in a})
    try:
        cfg.validate()
    except (ValueError, weights.WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.scale == 1:   # no mask (the empty one's threshold) and no Z
        cfg = replace(cfg, lr_codec="avif", mask_threshold=65535.0, z_temperature=0.0, temperature=0.0)
    else:
        card = weights.card(cfg.base_model)
        cfg = replace(cfg, lr_codec=card.defaults.lr_codec, mask_threshold=card.defaults.threshold,
                      z_temperature=card.trained_temperature, temperature=card.defaults.temperature)
    if a["out"].exists() and not a["out"].is_dir():
        print(f"error: --out {a['out']} is a file; it names the run's folder", file=sys.stderr)
        return 2
    if (a["out"] / "checkpoint.pt").exists():   # a finished or running head: not replaced
        print(f"error: {a['out']} already holds a run (checkpoint.pt); choose another --out", file=sys.stderr)
        return 2
    missing = [d for d in cfg.data if not Path(d).exists()]
    if missing or not (cfg.data or cfg.scale == 1 and not cfg.width):   # a typo would be skipped: no
        # photos from it; an x1 model with no head (--width 0) is trained on none
        print(f"error: {missing[0]}: no such file or folder" if missing else "error: --data is required",
              file=sys.stderr)
        return 2
    if cfg.init_from:   # a name is the installed model's file: export counts its CPU-hours by path
        try:
            cfg = replace(cfg, init_from=read_init(cfg.init_from, weights_only=True)[0])
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    made = not a["out"].exists()
    try:
        a["out"].mkdir(parents=True, exist_ok=True)
        done = train(cfg, a["out"], log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True),
                     until=a["until"])
    except (ValueError, OSError, weights.WeightsError, Stopped) as e:   # an --init-from that does not
        print(f"error: {e}", file=sys.stderr)   # fit, a folder it cannot write, a stop before any checkpoint
        drop_empty_run(a["out"], made)
        if isinstance(e, Stopped):
            return 128 + e.signum
        return 1 if isinstance(e, (OSError, NoImages, ImageInputError)) else 2
    except KeyboardInterrupt:   # Ctrl-C before the handlers were in place
        print("interrupted", file=sys.stderr)
        return 130
    return 128 + done["stopped_by"] if done.get("stopped_by") else 0   # saved, but stopped: as a shell counts it


if __name__ == "__main__":
    sys.exit(main())

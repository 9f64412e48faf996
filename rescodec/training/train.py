"""Training of the rescaling flow with the BDFlow losses (Eq. 4, 7-11).

    python -m rescodec.training --scale 4 --data ../shared/datasets/train \
        --val ../shared/datasets/val --out runs/x4 --steps 3000 --minutes 30

Stops cleanly at --minutes, saves a checkpoint (model, optimiser, step, RNG
states and both configs), and `--resume` continues exactly from it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..flow import FlowConfig, RescaleFlow
from .. import lossy_lr
from ..lr_quant import lr_grid, rate_proxy
from ..latent import b_values
from ..mask import MaskParams, boundary_strength, quantize, to_lr
from ..settings import EncodeSettings
from ..evaluation.metrics import psnr, psnr_y

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
BACK_LOSSES = ("l1", "l2")   # TrainConfig.back_loss, see back_loss()


@dataclass
class TrainConfig:
    data: list = field(default_factory=list)   # folders of training images
    val: list = field(default_factory=list)    # folders of validation images
    patch: int = 96            # HR patch side (multiple of the scale)
    batch: int = 8
    lr: float = 2e-4           # Sec. 4.2: Adam, cosine 2e-4 -> 1e-6
    lr_min: float = 1e-6
    lr_prior: float = 0.0      # peak lr of the latent prior (0: lr); a new prior next to a trained flow
    steps: int = 3000          # length of the cosine schedule
    schedule_minutes: float = 0.0  # >0: the cosine runs over this many wall-clock minutes instead
    minutes: float = 0.0       # wall-clock budget for this invocation (0: none)
    lambda_forw: float = 2.0   # lambda1, Eq. 8
    lambda_back: float = 2.0   # lambda2, Eq. 4 / 9
    back_loss: str = "l1"      # one of BACK_LOSSES: Eq. 9's l1, or "l2", PSNR's own error (back_loss())
    lambda_bam: float = 16.0   # lambda4, Eq. 10
    lambda_latent: float = 4.0  # lambda5, Eq. 11
    lambda_ssim: float = 0.0   # stands in for LPIPS (lambda3, Eq. 7): lambda * (1 - SSIM)
    lambda_rate: float = 0.0   # not in BDFlow: lambda * rate_proxy(LR), the lossless LR's bits
    lr_step: int = 1           # not in BDFlow: the LR's quantiser step (1: 8 bits); the codec's default for the model
    lr_space: str = "rgb"      # not in BDFlow: the colour space of the LR codes, rgb or ycc (settings.LR_SPACES)
    lr_codec: str = "lossless"  # not in BDFlow: "avif", the LR round-trips through the real lossy codec
    lr_quality_min: int = 10   # with lr_codec avif: each patch's quality is drawn from min..max
    lr_quality_max: int = 60
    baw_start: float = 0.3     # Eq. 4: BAW switches on after 30% of training
    z_temperature: float = 0.0  # Z scale while training (0: train for the PSNR decode)
    mask_bits: int = 1
    mask_threshold: float = MaskParams.threshold  # Algorithm 1's T; the codec's default for the model
    val_every: int = 500
    save_every_s: float = 300.0
    threads: int = 2
    seed: int = 0
    init_from: str = ""        # checkpoint of a shallower or narrower model to copy levels from

    def encode_settings(self, scale: int) -> EncodeSettings:
        """The codec settings this run trains for: its validation's, and the
        exported model's encoder defaults."""
        lossy = self.lr_codec == "avif"
        return EncodeSettings(scale=scale, bits=self.mask_bits, threshold=float(self.mask_threshold),
                              lr_step=1 if lossy else self.lr_step, lr_space="rgb" if lossy else self.lr_space,
                              lr_codec=self.lr_codec,
                              lr_quality=(self.lr_quality_min + self.lr_quality_max) // 2 if lossy else None)

    def validate(self, scale: int) -> None:
        self.encode_settings(scale).validate()
        for q in (self.lr_quality_min, self.lr_quality_max):
            EncodeSettings(lr_quality=q).validate()
        check_back_loss(self.back_loss)
        if self.lr_quality_min > self.lr_quality_max:
            raise ValueError("--lr-quality-min is above --lr-quality-max")


def list_images(folders) -> list[Path]:
    out = []
    for d in folders:
        out += sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return out


def load_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class PatchSampler:
    """Random crops with flips and 90-degree rotations, from images in memory."""

    def __init__(self, folders, patch: int, rng: np.random.Generator):
        self.images = [im for im in map(load_rgb, list_images(folders))
                       if min(im.shape[:2]) >= patch]
        if not self.images:
            raise SystemExit(f"no training images of at least {patch}x{patch} in {folders}")
        self.patch, self.rng = patch, rng

    def batch(self, n: int) -> np.ndarray:
        out = np.empty((n, self.patch, self.patch, 3), np.uint8)
        for i in range(n):
            im = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(im.shape[0] - self.patch + 1)
            x = self.rng.integers(im.shape[1] - self.patch + 1)
            p = im[y:y + self.patch, x:x + self.patch]
            if self.rng.random() < 0.5:
                p = p[:, ::-1]
            out[i] = np.rot90(p, self.rng.integers(4))
        return out


def batch_tensor(patches: np.ndarray, memory_format=torch.channels_last) -> torch.Tensor:
    """uint8 (N, H, W, 3) patches -> float (N, 3, H, W) in [0, 1]; channels_last
    by default, the layout training runs in (BENCHMARKS.md, "Session 6")."""
    x = torch.from_numpy(patches.astype(np.float32) / 255).permute(0, 3, 1, 2)
    return x.contiguous(memory_format=memory_format)


def mask_targets(patches: np.ndarray, scale: int, params: MaskParams, b_scale: float = 1.0):
    """-> B at LR (N,1,h,w) and the normalised B_s at HR (N,1,H,W) for Eq. 4."""
    lr, norm = [], []
    for p in patches:
        s = boundary_strength(p, params)
        lr.append(b_values(to_lr(quantize(s, params), scale), params.bits, b_scale))
        lo, hi = s.min(), s.max()
        norm.append((s - lo) / (hi - lo) if hi > lo else np.zeros_like(s))
    return (torch.from_numpy(np.stack(lr))[:, None], torch.from_numpy(np.stack(norm))[:, None])


def bicubic_lr(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic LR that Eq. 8 pulls Y towards."""
    return F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True,
                         align_corners=False)


def back_loss(err: torch.Tensor, weight, kind: str = "l1") -> torch.Tensor:
    """Eq. 9's weighted l1, or ("l2") the weighted squared error that PSNR
    measures, divided by 2 mean|err| (no gradient through it): where |err| is
    the mean error the gradient equals l1's, so the other lambdas keep their
    balance."""
    check_back_loss(kind)
    if kind == "l1":
        return (weight * err.abs()).mean()
    return (weight * err.pow(2)).mean() / (2 * err.abs().mean().detach() + 1e-8)


def check_back_loss(kind: str) -> None:
    if kind not in BACK_LOSSES:
        raise ValueError(f"--back-loss must be one of {', '.join(BACK_LOSSES)}, got {kind!r}")


def losses(model: RescaleFlow, x, b_lr, bs_norm, cfg: TrainConfig, baw_on: bool):
    """Eq. 7 without LPIPS (see README): forw + back + BAM + latent."""
    s = model.config.scale
    out = model(x)
    y, b, z = RescaleFlow.split(out)
    l_forw = cfg.lambda_forw * F.mse_loss(y, bicubic_lr(x, s))            # Eq. 8
    l_bam = cfg.lambda_bam * F.mse_loss(b, b_lr)                          # Eq. 10
    l_latent = cfg.lambda_latent * 0.5 * z.pow(2).mean()                  # Eq. 11, N(0,1) NLL
    z_s = cfg.z_temperature * torch.randn_like(z)
    if cfg.lr_codec == "avif":   # as the decoder reads it, gradient straight through
        q = torch.randint(cfg.lr_quality_min, cfg.lr_quality_max + 1, (y.shape[0],)).tolist()
        y_q = lossy_lr.round_trip(y, q)[0]
    else:
        y_q = lr_grid(y, cfg.lr_step, cfg.lr_space)                       # as stored
    x_back = model.inverse(torch.cat([y_q, b_lr, z_s], dim=1))
    weight = cfg.lambda_back + (bs_norm if baw_on else 0.0)               # Eq. 4
    l_back = back_loss(x_back - x, weight, cfg.back_loss)                 # Eq. 9
    parts = {"forw": l_forw, "back": l_back, "bam": l_bam, "latent": l_latent}
    if cfg.lambda_rate and cfg.lr_codec != "avif":
        # rate-distortion: the lossless LR is ~95% of a file, so its bits are the rate
        parts["rate"] = cfg.lambda_rate * rate_proxy(y_q, cfg.lr_step, cfg.lr_space)
    if cfg.lambda_ssim:
        # LPIPS needs torchvision and downloaded backbones; SSIM is the
        # measured stand-in (BENCHMARKS.md, "Training: quality per CPU-minute")
        from pytorch_msssim import ssim
        parts["ssim"] = cfg.lambda_ssim * (1 - ssim(x_back.clamp(0, 1), x, data_range=1.0))
    return parts


@torch.no_grad()
def validate(model: RescaleFlow, images, settings: EncodeSettings) -> dict:
    """PSNR (RGB and Y) and whole-file bpp of the real codec with this network:
    encode, container and decode, as users run it (Z as in `settings`)."""
    from .. import codec   # imported here: the codec's coders are not needed to train
    model.eval()
    rgb, ych, bpp = [], [], []
    for im in images:
        data = codec.encode_ex(im, settings, net=model).data
        out = codec.decode_array(data, net=model)[0]
        rgb.append(psnr(im, out))
        ych.append(psnr_y(im, out))
        bpp.append(8 * len(data) / (im.shape[0] * im.shape[1]))
    model.train()
    return {"psnr_rgb": float(np.mean(rgb)), "psnr_y": float(np.mean(ych)),
            "bpp": float(np.mean(bpp))}


def progress_at(step: int, elapsed_s: float, cfg: TrainConfig) -> float:
    """Fraction of the schedule done: by steps, or by training time when
    schedule_minutes is set (wall-clock, validation included: a run that must
    end inside a session)."""
    if cfg.schedule_minutes > 0:
        return min(elapsed_s / (cfg.schedule_minutes * 60), 1.0)
    return min(step / max(cfg.steps, 1), 1.0)


def baw_on(step: int, elapsed_s: float, cfg: TrainConfig) -> bool:
    """Eq. 4: the boundary-aware weight joins L_back after baw_start of training."""
    return progress_at(step, elapsed_s, cfg) >= cfg.baw_start


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    t = progress_at(step, elapsed_s, cfg)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def init_from_shallower(model: RescaleFlow, path: str) -> int:
    """Copy the levels a shallower model has (its level l == our level l).

    Where our subnets are wider (a larger `deep_width`), the old weights fill
    the leading channels and the weights reading the new channels start at
    zero, so the model computes exactly what the old one did and the new
    channels grow from there."""
    src = torch.load(path, map_location="cpu", weights_only=False)["model"]
    own = model.state_dict()
    copied = {}
    for k, v in src.items():
        if k not in own:
            continue
        t = own[k]
        if t.shape == v.shape:
            copied[k] = v
        elif t.dim() == v.dim() and all(n >= m for n, m in zip(t.shape, v.shape)):
            t = t.clone()
            if t.dim() > 1:
                t[:, v.shape[1]:] = 0
            t[tuple(slice(0, m) for m in v.shape)] = v
            copied[k] = t
    own.update(copied)
    model.load_state_dict(own)
    return len(copied)


def train(flow_cfg: FlowConfig, cfg: TrainConfig, out: Path, resume: bool = False,
          log=print, stop_after: int | None = None) -> dict:
    """Train (or resume) into `out`; `stop_after` ends this invocation after
    that many steps, as --minutes does by time."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = RescaleFlow(flow_cfg)
    prior = [p for n, p in model.named_parameters() if n.startswith("prior.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("prior.")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if prior:
        groups.append({"params": prior, "lr_scale": (cfg.lr_prior or cfg.lr) / cfg.lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
    step, elapsed, history = 0, 0.0, []
    cpu = 0.0   # process CPU seconds spent on training steps (validation excluded)
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, elapsed, history = state["step"], state["elapsed_s"], state["history"]
        cpu = state.get("cpu_s", 0.0)
        rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        log(f"resumed {ckpt_path} at step {step}")
    elif cfg.init_from:
        log(f"initialised {init_from_shallower(model, cfg.init_from)} tensors from {cfg.init_from}")
    params = MaskParams(bits=cfg.mask_bits, threshold=cfg.mask_threshold)
    sampler = PatchSampler(cfg.data, cfg.patch, rng)
    val_images = [load_rgb(p) for p in list_images(cfg.val)]
    log(f"{len(sampler.images)} training images, {len(val_images)} val images, "
        f"{sum(p.numel() for p in model.parameters())} params")

    def state_dict():
        return {"flow_config": asdict(flow_cfg), "train_config": asdict(cfg),
                "model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                "elapsed_s": elapsed, "cpu_s": cpu, "history": history,
                "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(),
                        "python": random.getstate()}}

    # channels_last: 10-16 % faster steps at x2-x8 on this CPU, same maths
    # (BENCHMARKS.md, "Session 6"); module._apply keeps the optimiser's parameters
    model.to(memory_format=torch.channels_last)
    model.train()
    t_start = t_save = t_log = time.time()
    elapsed0, step0 = elapsed, step
    stop = []   # SIGTERM / SIGINT finish the step, save, and stop
    handlers = {sig: signal.signal(sig, lambda *_: stop.append(1))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    def run_val():
        v = validate(model, val_images, cfg.encode_settings(flow_cfg.scale))
        history.append({"step": step, "elapsed_s": round(elapsed, 1), "cpu_s": round(cpu, 1), **v})
        log(f"val step {step}: " + ", ".join(f"{k} {x:.4f}" for k, x in v.items()))

    while step < cfg.steps and not stop:
        if cfg.minutes and time.time() - t_start > cfg.minutes * 60:
            log(f"time budget of {cfg.minutes} min reached at step {step}")
            break
        if cfg.schedule_minutes and progress_at(step, elapsed, cfg) >= 1:
            log(f"schedule of {cfg.schedule_minutes} min complete at step {step}")
            break
        if stop_after is not None and step - step0 >= stop_after:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, elapsed) * g.get("lr_scale", 1.0)
        c0 = time.process_time()
        patches = sampler.batch(cfg.batch)
        b_lr, bs_norm = mask_targets(patches, flow_cfg.scale, params, flow_cfg.b_scale)
        x = batch_tensor(patches)
        parts = losses(model, x, b_lr, bs_norm, cfg, baw_on=baw_on(step, elapsed, cfg))
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        step += 1
        cpu += time.process_time() - c0
        now = time.time()
        elapsed = elapsed0 + now - t_start
        if now - t_log > 30 or step == cfg.steps:
            rate = (step - step0) / max(now - t_start, 1e-9)
            eta = (cfg.steps - step) / max(rate, 1e-9)
            if cfg.schedule_minutes:
                eta = cfg.schedule_minutes * 60 - elapsed
            log(f"step {step}/{cfg.steps} loss {loss.item():.4f} "
                + " ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
                + f" | {rate:.2f} it/s, eta {eta / 60:.1f} min, lr {lr_at(step, cfg, elapsed):.2e}")
            t_log = now
        if val_images and (step % cfg.val_every == 0 or step == cfg.steps):
            run_val()
        if now - t_save > cfg.save_every_s:
            save_checkpoint(ckpt_path, state_dict())
            t_save = now
    for sig, h in handlers.items():
        signal.signal(sig, h)
    if val_images and step > step0 and (not history or history[-1]["step"] != step):
        run_val()        # the curve ends where the run ends
    save_checkpoint(ckpt_path, state_dict())
    (out / "history.json").write_text(json.dumps(history, indent=1))
    log(f"saved {ckpt_path} at step {step} ({elapsed / 60:.1f} min of training)")
    return state_dict()


def export_run(run: Path, name: str, val_dir: Path | None, data_note: str = "",
               default: bool = True) -> dict:
    """Checkpoint -> weights/ + manifest entry, then measure the exported
    (fp16) model through the real codec on `val_dir`: bpp, PSNR RGB and Y."""
    from .. import codec, weights
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = state["train_config"]
    info = {"training_data": data_note or ", ".join(cfg["data"]), "history": state["history"]}
    e = weights.export(run / "checkpoint.pt", name, weights.weights_dir(), info, default=default)
    if val_dir is not None:
        rows = []
        for p in list_images([val_dir]):
            rgb = load_rgb(p)
            data = codec.encode(rgb, e["scale"], model=name)
            out, _, _ = codec.decode_array(data)
            rows.append((8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, out), psnr_y(rgb, out)))
        m = np.mean(rows, axis=0)
        val = {"images": len(rows), "set": str(val_dir), "bpp": round(float(m[0]), 4),
               "psnr_rgb": round(float(m[1]), 3), "psnr_y": round(float(m[2]), 3),
               "note": "whole image through the codec, Z temperature 0, no border crop"}
        weights.update_entry(name, validation=val)
        e["validation"] = val
    return e


def _add_dataclass_args(parser, cls, skip=()):
    for f in fields(cls):
        if f.name in skip:
            continue
        kind = type(f.default) if f.default is not None and not callable(f.default_factory) else list
        if kind is list:
            parser.add_argument(f"--{f.name.replace('_', '-')}", nargs="+", default=[])
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rescodec.training", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--resume", action="store_true")
    _add_dataclass_args(p, FlowConfig)
    _add_dataclass_args(p, TrainConfig)
    a = vars(p.parse_args(argv))
    flow_cfg = FlowConfig(**{f.name: a[f.name] for f in fields(FlowConfig)})
    cfg = TrainConfig(**{f.name: a[f.name] for f in fields(TrainConfig)})
    if a["resume"] and (a["out"] / "checkpoint.pt").exists():
        # the saved configs win, so a resumed run is the same run
        state = torch.load(a["out"] / "checkpoint.pt", map_location="cpu", weights_only=False)
        flow_cfg = FlowConfig(**state["flow_config"])
        saved = TrainConfig(**state["train_config"])
        saved.minutes = cfg.minutes
        cfg = saved
    try:
        flow_cfg.validate()
        cfg.validate(flow_cfg.scale)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train(flow_cfg, cfg, a["out"], resume=a["resume"],
          log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

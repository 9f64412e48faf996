"""Training of the rescaling flow with the BDFlow losses (Eq. 4, 7-11).

    python -m rescodec.training --scale 4 --data ../shared/datasets/train \
        --val ../shared/datasets/val --out runs/x4 --steps 3000 --minutes 30

Stops cleanly at --minutes, saves a checkpoint (model, optimiser, step, RNG
states and both configs), and `--resume` continues exactly from it.

One machine, several processes: the same command under PyTorch's launcher
trains with DistributedDataParallel (backend gloo on CPU, nccl with
--device cuda, one GPU per process: LOCAL_RANK's):

    torchrun --standalone --nproc_per_node 4 -m rescodec.training --scale 4 \
        --data ../shared/datasets/train --val ../shared/datasets/val --out runs/x4 \
        --batch 8 --threads 1 --minutes 30

Each process samples its own patches (its RNGs seeded with seed + rank), so
the effective batch is N x --batch; DDP averages the processes' gradients
(--lr is not scaled with N).  Rank 0 alone validates, logs ("| world N |")
and writes the checkpoint, and its clock decides when to stop (--minutes,
--schedule-minutes); a SIGTERM / SIGINT to any process counts too, and every
process stops at the same step (torchrun passes its own SIGTERM on to all).
Without torchrun's variables (WORLD_SIZE, RANK, LOCAL_RANK) training runs as
one process; --device cuda then trains on the current GPU.

Several machines: torchrun's own rendezvous flags, the same command on each
machine (--node_rank 0 .. nnodes-1), host:port one reachable machine's:

    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint host:29400 -m rescodec.training ...

--data must exist on every machine; --out should be a shared folder, since
every process reads the checkpoint on --resume (rank 0 alone writes it).

The checkpoint holds rank 0's state.  `--resume` with another number of
processes works and continues the schedule (step, lr, optimiser), but is not
bit-identical to an uninterrupted run: the effective batch changes, and ranks
above 0 re-derive their RNGs from (seed, rank, step).  With the same N too,
only rank 0's patches continue exactly as they would have.

--device cuda trains on a GPU in fp32: no mixed precision, the invertible
flow's inverse is sensitive to rounding (fp16 / bf16 untested).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import signal
import sys
import time
from datetime import timedelta
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..flow import FlowConfig, RescaleFlow
from .. import atomic_write, lossy_lr, stop_signals, weights
from ..lr_quant import lr_grid, rate_proxy
from ..latent import b_values
from ..mask import MaskParams, boundary_strength, quantize, to_lr
from ..errors import RscError
from ..settings import EncodeSettings, lr_storage
from ..evaluation.metrics import psnr, psnr_y
from ..image_folders import list_images, load_rgb

BACK_LOSSES = ("l1", "l2")   # TrainConfig.back_loss, see back_loss()
DEVICES = ("cpu", "cuda")    # TrainConfig.device


@dataclass
class TrainConfig:
    data: list = field(default_factory=list)   # folders of training images
    val: list = field(default_factory=list)    # folders of validation images
    patch: int = 96            # HR patch side (multiple of the scale)
    batch: int = 8             # patches per step (per process under torchrun)
    lr: float = 2e-4           # Sec. 4.2: Adam, cosine 2e-4 -> 1e-6
    lr_min: float = 1e-6       # the cosine schedule's end
    lr_prior: float = 0.0      # peak lr of the latent prior (0: lr); a new prior next to a trained flow
    steps: int = 3000          # length of the cosine schedule
    schedule_minutes: float = 0.0  # >0: the cosine runs over this many wall-clock minutes instead
    minutes: float = 0.0       # wall-clock budget for this invocation (0: none)
    lambda_forw: float = 2.0   # lambda1, Eq. 8
    lambda_back: float = 2.0   # lambda2, Eq. 4 / 9
    back_loss: str = "l1"      # l1 (Eq. 9) or l2, PSNR's own error (back_loss())
    lambda_bam: float = 16.0   # lambda4, Eq. 10
    lambda_latent: float = 4.0  # lambda5, Eq. 11
    lambda_ssim: float = 0.0   # stands in for LPIPS (lambda3, Eq. 7): lambda * (1 - SSIM)
    lambda_rate: float = 0.0   # not in BDFlow: lambda * the LR's rate proxy (lossless: lr_quant's; avif: lossy_lr's)
    lr_step: int = 1           # not in BDFlow: the LR's quantiser step (1: 8 bits); the codec's default for the model
    lr_space: str = "rgb"      # not in BDFlow: the colour space of the LR codes, rgb or ycc
    lr_codec: str = "lossless"  # not in BDFlow: "avif", the LR round-trips through the real lossy codec
    lr_quality_min: int = 10   # with lr_codec avif: each patch's quality is drawn from min..max
    lr_quality_max: int = 60   # with lr_codec avif: the highest quality drawn
    codec_workers: int = 1     # with lr_codec avif: patches round-tripped at once (threads)
    anchor: str = ""           # not in BDFlow: a weights file whose LR this run keeps (see lambda_anchor)
    lambda_anchor: float = 0.0  # lambda * MSE(Y, the anchor model's Y): the encoder stays put
    baw_start: float = 0.3     # Eq. 4: BAW switches on after 30% of training
    z_temperature: float = 0.0  # highest Z scale while training (0: train for the t = 0 decode only)
    z_temperature_min: float = 0.0  # each patch's Z scale is drawn from min..z_temperature (IRN's sampled Z)
    mask_bits: int = 1         # Algorithm 1's bits per mask level (1-3)
    mask_threshold: float = MaskParams.threshold  # Algorithm 1's T; the codec's default for the model
    val_every: int = 500       # steps between validations (the real codec on --val)
    save_every_s: float = 300.0  # seconds between checkpoints
    threads: int = 2           # torch threads of this process
    seed: int = 0              # RNG seed (patches, Z, init)
    init_from: str = ""        # a checkpoint, weights file or installed model's name to copy levels from
    device: str = "cpu"        # cpu or cuda; under torchrun with cuda, LOCAL_RANK's GPU

    def encode_settings(self, scale: int) -> EncodeSettings:
        """The codec settings this run trains for: its validation's, and the
        exported model's encoder defaults."""
        lossy = self.lr_codec == "avif"
        step, space = lr_storage(self.lr_codec, self.lr_step, self.lr_space)
        return EncodeSettings(scale=scale, bits=self.mask_bits, threshold=float(self.mask_threshold),
                              temperature=0.0, lr_step=step, lr_space=space, lr_codec=self.lr_codec,
                              lr_quality=(self.lr_quality_min + self.lr_quality_max) // 2 if lossy else None)

    def validate(self, scale: int) -> None:
        self.encode_settings(scale).validate()
        if self.steps < 1 or self.minutes < 0 or self.schedule_minutes < 0:
            raise ValueError("--steps must be at least 1, --minutes and --schedule-minutes 0 or more")
        if self.batch < 1 or self.patch < 1 or self.patch % scale:
            raise ValueError(f"--batch must be at least 1, and --patch a positive multiple of {scale}")
        for q in (self.lr_quality_min, self.lr_quality_max):
            EncodeSettings(lr_quality=q).validate()
        check_back_loss(self.back_loss)
        if self.lr_quality_min > self.lr_quality_max:
            raise ValueError("--lr-quality-min is above --lr-quality-max")
        if bool(self.anchor) != (self.lambda_anchor > 0):
            raise ValueError("--anchor and --lambda-anchor go together")
        if self.codec_workers < 1 or self.threads < 1 or self.val_every < 1:
            raise ValueError("--codec-workers, --threads and --val-every must be at least 1")
        if not self.lr > 0:
            raise ValueError("--lr must be above 0")
        if not 0 <= self.z_temperature_min <= self.z_temperature:
            raise ValueError("--z-temperature-min must be in [0, --z-temperature]")
        EncodeSettings(temperature=self.z_temperature).validate()
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda, but PyTorch sees no CUDA device")


class NoImages(ValueError):
    """--data holds no image the run can use."""


class PatchSampler:
    """Random crops with flips and 90-degree rotations, from images in memory."""

    def __init__(self, folders, patch: int, rng: np.random.Generator):
        self.images = [im for im in map(load_rgb, list_images(folders))
                       if min(im.shape[:2]) >= patch]
        if not self.images:
            raise NoImages(f"no training images of at least {patch}x{patch} in {', '.join(map(str, folders))}"
                           if folders else "no training images: --data is required")
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
    by default, the layout training runs in (CHANGELOG.md, 0.2.0, "benchmark train-step")."""
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


def losses(model: RescaleFlow, x, b_lr, bs_norm, cfg: TrainConfig, baw_on: bool, anchor=None):
    """Eq. 7 without LPIPS (docs/training.md): forw + back + BAM + latent; with an
    anchor network, also its LR as a target."""
    s = model.config.scale
    out = model(x)
    y, b, z = RescaleFlow.split(out)
    parts = {}
    if anchor is not None:
        # the files stay where rate-distortion measurement put them while the
        # inverse learns something else (e.g. a sampled Z): the LR is held to the anchor's
        with torch.no_grad():
            y_anchor = RescaleFlow.split(anchor(x))[0]
        parts["anchor"] = cfg.lambda_anchor * F.mse_loss(y, y_anchor)
    l_forw = cfg.lambda_forw * F.mse_loss(y, bicubic_lr(x, s))            # Eq. 8
    l_bam = cfg.lambda_bam * F.mse_loss(b, b_lr)                          # Eq. 10
    l_latent = cfg.lambda_latent * 0.5 * z.pow(2).mean()                  # Eq. 11, N(0,1) NLL
    z_s = torch.randn_like(z) * z_scales(cfg, z.shape[0]).to(z) * model.config.z_std
    if cfg.lr_codec == "avif":   # as the decoder reads it, gradient straight through
        q = torch.randint(cfg.lr_quality_min, cfg.lr_quality_max + 1, (y.shape[0],)).tolist()
        y_q = lossy_lr.round_trip(y, q, lossy_lr.TRAIN_SPEED, cfg.codec_workers)[0]
    else:
        y_q = lr_grid(y, cfg.lr_step, cfg.lr_space)                       # as stored
    x_back = model.inverse(torch.cat([y_q, b_lr, z_s], dim=1))
    weight = cfg.lambda_back + (bs_norm if baw_on else 0.0)               # Eq. 4
    l_back = back_loss(x_back - x, weight, cfg.back_loss)                 # Eq. 9
    parts.update({"forw": l_forw, "back": l_back, "bam": l_bam, "latent": l_latent})
    if cfg.lambda_rate and cfg.lr_codec == "avif":
        # the LR's AVIF bytes: without this the forward hides detail in the LR
        # that AVIF pays for (BENCHMARKS.md, "A rate term for the AVIF LR")
        parts["rate"] = cfg.lambda_rate * lossy_lr.rate_proxy(y)
    elif cfg.lambda_rate:
        # rate-distortion: the lossless LR is ~95% of a file, so its bits are the rate
        parts["rate"] = cfg.lambda_rate * rate_proxy(y_q, cfg.lr_step, cfg.lr_space)
    if cfg.lambda_ssim:
        # LPIPS needs torchvision and downloaded backbones; SSIM is the
        # measured stand-in (CHANGELOG.md, 0.2.0, "rescodec.train_sweep")
        from pytorch_msssim import ssim
        parts["ssim"] = cfg.lambda_ssim * (1 - ssim(x_back.clamp(0, 1), x, data_range=1.0))
    return parts


@torch.no_grad()
def measure_z_std(model: RescaleFlow, sampler: "PatchSampler", device=torch.device("cpu"),
                  batches: int = 8, n: int = 16) -> float:
    """RMS of the forward's Z over training patches: the spread the decoder
    draws Z with at t = 1 (FlowConfig.z_std).  Under DDP, rank 0's."""
    sq = [RescaleFlow.split(model(batch_tensor(sampler.batch(n)).to(device)))[2].pow(2).mean().item()
          for _ in range(batches)]
    v = torch.tensor([float(np.sqrt(np.mean(sq)))], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(v, 0)
    return round(v.item(), 6)


def z_scales(cfg: TrainConfig, n: int) -> torch.Tensor:
    """Each patch's Z temperature, (n, 1, 1, 1): drawn from U(min, max), so
    the inverse learns to read [Y | B | t eps] at every t the decoder may use."""
    if cfg.z_temperature_min == cfg.z_temperature:
        return torch.full((n, 1, 1, 1), float(cfg.z_temperature))
    u = torch.rand(n, 1, 1, 1)
    return cfg.z_temperature_min + (cfg.z_temperature - cfg.z_temperature_min) * u


class LossNet(torch.nn.Module):
    """The flow with losses() as its forward.  This is what DDP wraps: DDP
    hooks forward() only, and a step runs the flow both ways (forward, then
    inverse), so both must happen inside one forward call."""

    def __init__(self, flow: RescaleFlow, cfg: TrainConfig, anchor: RescaleFlow | None = None):
        super().__init__()
        self.flow, self.cfg = flow, cfg
        self._anchor = [anchor]   # in a list: not a submodule, so neither trained nor saved

    def forward(self, x, b_lr, bs_norm, baw_on: bool) -> dict:
        return losses(self.flow, x, b_lr, bs_norm, self.cfg, baw_on, self._anchor[0])


def backward_on(net, patches: np.ndarray, params: MaskParams, baw: bool,
                device=torch.device("cpu")):
    """One step's losses on these uint8 patches through `net` (a LossNet, or
    DDP around one), and their gradients (replacing any old ones) -> (loss, parts).

    Under DDP the gradients after backward are the mean over the ranks of each
    rank's gradient.  Every loss is a mean over the batch, so with equal shares
    that is the gradient of the whole batch in one process; not quite for
    --back-loss l2, whose divisor is each rank's own mean |err|."""
    flow = (net.module if isinstance(net, DistributedDataParallel) else net).flow
    b_lr, bs_norm = mask_targets(patches, flow.config.scale, params, flow.config.b_scale)
    x = batch_tensor(patches).to(device)
    parts = net(x, b_lr.to(device), bs_norm.to(device), baw)
    loss = sum(parts.values())
    net.zero_grad(set_to_none=True)
    loss.backward()
    return loss, parts


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
    end inside a time budget)."""
    if cfg.schedule_minutes > 0:
        return min(elapsed_s / (cfg.schedule_minutes * 60), 1.0)
    return min(step / max(cfg.steps, 1), 1.0)


def baw_on(step: int, elapsed_s: float, cfg: TrainConfig) -> bool:
    """Eq. 4: the boundary-aware weight joins L_back after baw_start of training."""
    return progress_at(step, elapsed_s, cfg) >= cfg.baw_start


def cosine_lr(t: float, lr: float, lr_min: float) -> float:
    """The cosine schedule (Sec. 4.2) at fraction t of training."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t))


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    return cosine_lr(progress_at(step, elapsed_s, cfg), cfg.lr, cfg.lr_min)


def world() -> tuple[int, int]:
    """(world size, rank): (1, 0) unless a process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def init_distributed(device: str) -> bool:
    """Start the process group when torchrun's variables are set (gloo on
    CPU, nccl on CUDA, where each process takes LOCAL_RANK's GPU)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return False
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # rank 0 validates while the others wait at their next collective: allow
    # a long validation (the default is 10-30 minutes by backend)
    dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timedelta(hours=2))
    return True


def close_distributed() -> None:
    """End the process group.  DDP's reducer holds it: collected first, since
    freed only at interpreter exit, with gloo's threads still running, it now
    and then aborted the process."""
    gc.collect()
    dist.destroy_process_group()


def rank_rngs(seed: int, rank: int, step: int):
    """Fresh RNGs for a rank above 0 resuming at `step`: the checkpoint holds
    rank 0's states only, so the others derive theirs from (seed, rank, step)."""
    ss = np.random.SeedSequence([seed, rank, step])
    torch.manual_seed(int(ss.generate_state(1, np.uint64)[0] >> 1))
    random.seed(int(ss.generate_state(2, np.uint64)[1]))
    return np.random.default_rng(ss)


def agree(stopping: bool, elapsed: float, device, cpu_s: float = 0.0) -> tuple[bool, float, float]:
    """One all-reduce per step: stop if any rank must (rank 0 decides time
    budget, schedule and signals; a signal on another rank counts too), and
    rank 0's elapsed time for everyone, so that lr_at() and baw_on() agree;
    and the CPU seconds every rank spent since, summed, for the CPU-hours."""
    rank = dist.get_rank()
    t = torch.tensor([float(stopping), elapsed if rank == 0 else 0.0, cpu_s], dtype=torch.float64,
                     device=device)
    dist.all_reduce(t)
    return bool(t[0] > 0), float(t[1]), float(t[2])


def catch_stop_signals() -> tuple[list, dict]:
    """SIGTERM / SIGINT / SIGHUP (a closed terminal; not where ignored, as
    under nohup) append to the returned list instead of killing the process,
    so a training loop can finish its step, save and stop; also the old
    handlers, for restore_signals."""
    stop = []
    handlers = {sig: signal.signal(sig, lambda n, _: stop.append(n))
                for sig in stop_signals.STOP if signal.getsignal(sig) is not signal.SIG_IGN}
    return stop, handlers


def restore_signals(handlers: dict) -> None:
    for sig, h in handlers.items():
        signal.signal(sig, h)


def drop_empty_run(out: Path, made: bool) -> None:
    """A run folder this command made and that holds no run is not left behind."""
    if made and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def save_checkpoint(path: Path, state: dict) -> None:
    weights.save_torch(path, state)


def read_init(init_from: str, weights_only: bool = False, flag: str = "--init-from") -> tuple[str, dict]:
    """--init-from (or `flag`): a checkpoint or weights file, or an installed
    model's name -> (its path, its state); ValueError where it is neither."""
    path = init_from
    if not Path(path).exists():
        try:
            path = str(weights.weights_dir() / weights.entry(init_from)["file"])
        except weights.WeightsError:
            raise ValueError(f"{flag} {init_from}: no such file or installed model") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
        state["model"].items()
    except Exception as e:   # whatever torch.load raises on a file that is not one of ours
        raise weights.WeightsError(f"{flag} {init_from}: not a checkpoint or weights file "
                                   f"({type(e).__name__})") from None
    return path, state


def check_anchor(path: str, scale: int) -> None:
    """ValueError unless --anchor is a weights file or checkpoint of a flow of
    this scale: anything else failed after the images loaded, as an internal
    error."""
    state = read_init(path, weights_only=True, flag="--anchor")[1]
    theirs = state.get("flow_config", {}).get("scale")
    if theirs != scale:
        raise ValueError(f"--anchor {path}: " + (f"an x{theirs} model; this run is x{scale}" if theirs
                                                 else "no flow's configuration in it"))


class InitError(ValueError):
    """An --init-from file of which nothing fits the flow being trained."""


def init_from_shallower(model: RescaleFlow, path: str, state: dict | None = None) -> tuple[int, list]:
    """Copy the levels a shallower model has (its level l == our level l)
    -> (tensors copied, names of its tensors left out: a shape that does not
    fit ours, or no place in this flow); InitError where nothing fits.

    Where our subnets are wider (a larger `deep_width`), the old weights fill
    the leading channels and the weights reading the new channels start at
    zero, so the model computes exactly what the old one did and the new
    channels grow from there.  `state`: the file's contents, where read already."""
    src = (state if state is not None else torch.load(path, map_location="cpu", weights_only=False))["model"]
    own = model.state_dict()
    copied, misfit = {}, []
    for k, v in src.items():
        if k not in own:
            misfit.append(k)
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
        else:
            misfit.append(k)
    if not copied:
        raise InitError(f"--init-from {path}: none of its tensors fits this flow (another --width or layout?)")
    own.update(copied)
    model.load_state_dict(own)
    return len(copied), misfit


def train(flow_cfg: FlowConfig, cfg: TrainConfig, out: Path, resume: bool = False,
          log=print, stop_after: int | None = None, init: dict | None = None) -> dict:
    """Train (or resume) into `out`; `stop_after` ends this invocation after
    that many steps, as --minutes does by time; `init`: the --init-from
    file's state, where the caller has read it.  Inside a process group
    (init_distributed) this process is one rank of a DDP run."""
    n_ranks, rank = world()
    distributed = dist.is_available() and dist.is_initialized()
    if rank:
        log = lambda m: None      # rank 0 speaks for the run
    device = torch.device(cfg.device)
    if cfg.device == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.set_num_threads(cfg.threads)
    # seed + rank: each rank its own patches (and AVIF qualities); rank 0 and a
    # single process have the seed itself.  DDP copies rank 0's weights to all.
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + rank)
    model = RescaleFlow(flow_cfg).to(device)
    prior = [p for n, p in model.named_parameters() if n.startswith("prior.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("prior.")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if prior:
        groups.append({"params": prior, "lr_scale": (cfg.lr_prior or cfg.lr) / cfg.lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
    step, elapsed, history = 0, 0.0, []
    cpu = 0.0   # CPU seconds spent on training steps, every rank's (validation excluded)
    pending_cpu = 0.0   # this rank's last step, until agree() sums it
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step, elapsed, history = state["step"], state["elapsed_s"], state["history"]
        cpu = state.get("cpu_s", 0.0)
        if rank == 0:
            rng.bit_generator.state = state["rng"]["numpy"]
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"])
        else:
            rng = rank_rngs(cfg.seed, rank, step)
        log(f"resumed {ckpt_path} at step {step}")
    elif cfg.init_from:
        copied, misfit = init_from_shallower(model, cfg.init_from, init)
        log(f"initialised {copied} tensors from {cfg.init_from}" + (
            f"; {len(misfit)} of its tensors left out, of another shape or with no place here "
            f"({', '.join(misfit[:3])}{', ...' if len(misfit) > 3 else ''})" if misfit else ""))
    params = MaskParams(bits=cfg.mask_bits, threshold=cfg.mask_threshold)
    sampler = PatchSampler(cfg.data, cfg.patch, rng)
    if flow_cfg.z_std == 0:   # model.config is flow_cfg: saved with every checkpoint
        flow_cfg.z_std = measure_z_std(model, sampler, device)
        log(f"Z's RMS on training patches: z_std {flow_cfg.z_std}")
    val_images = [load_rgb(p) for p in list_images(cfg.val)] if rank == 0 else []
    log(f"{len(sampler.images)} training images, {len(val_images)} val images, "
        f"{sum(p.numel() for p in model.parameters())} params"
        + (f", world {n_ranks} ({dist.get_backend()}), effective batch {n_ranks * cfg.batch}"
           if distributed else ""))

    def state_dict():
        rngs = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(),
                "python": random.getstate()}
        if device.type == "cuda":
            rngs["cuda"] = torch.cuda.get_rng_state()
        return {"flow_config": asdict(flow_cfg), "train_config": asdict(cfg),
                "model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                "elapsed_s": elapsed, "cpu_s": cpu, "history": history, "rng": rngs,
                "cwd": os.getcwd()}   # where --data, --val and --anchor, as given, are found

    # channels_last: 10-16 % faster steps at x2-x8 on this CPU, same maths
    # (CHANGELOG.md, 0.2.0, "benchmark train-step"); module._apply keeps the optimiser's parameters
    model.to(memory_format=torch.channels_last)
    model.train()
    # DDP after the move; `model` stays the bare flow, which validation and
    # the checkpoint use.  No mixed precision: fp32 throughout (module docstring).
    anchor = None
    if cfg.anchor:
        from ..weights import load_checkpoint
        anchor = load_checkpoint(cfg.anchor, weights_only=True)[0].to(device)
        anchor.requires_grad_(False)
        log(f"LR anchored to {cfg.anchor} (lambda {cfg.lambda_anchor:g})")
    net = LossNet(model, cfg, anchor)
    if distributed:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    t_start = t_save = t_log = time.time()
    elapsed0, step0 = elapsed, step
    stop, handlers = catch_stop_signals()   # SIGTERM / SIGINT finish the step, save, and stop
    def run_val():
        # the codec runs on the CPU: a GPU model is validated through a CPU copy
        net_val = model
        if device.type != "cpu":
            with torch.random.fork_rng(devices=[]):   # building it draws from the RNG
                net_val = RescaleFlow(flow_cfg).to(memory_format=torch.channels_last)
            net_val.load_state_dict(model.state_dict())
        settings = cfg.encode_settings(flow_cfg.scale)
        v = validate(net_val, val_images, settings)
        if cfg.z_temperature > 0:   # and with Z drawn at the highest trained t
            at_t = validate(net_val, val_images, replace(settings, temperature=cfg.z_temperature))
            v["psnr_rgb_t"] = at_t["psnr_rgb"]
        history.append({"step": step, "elapsed_s": round(elapsed, 1), "cpu_s": round(cpu, 1), **v})
        log(f"val step {step}: " + ", ".join(f"{k} {x:.4f}" for k, x in v.items()))

    while step < cfg.steps:
        halt = bool(stop)
        if not halt and rank == 0:   # the clocks: rank 0's alone
            if cfg.minutes and time.time() - t_start > cfg.minutes * 60:
                log(f"time budget of {cfg.minutes} min reached at step {step}")
                halt = True
            elif cfg.schedule_minutes and progress_at(step, elapsed, cfg) >= 1:
                log(f"schedule of {cfg.schedule_minutes} min complete at step {step}")
                halt = True
        if not halt and stop_after is not None and step - step0 >= stop_after:
            halt = True
        if distributed:   # every rank stops at the same step, on rank 0's clock
            halt, elapsed, spent = agree(halt, elapsed, device, pending_cpu)
            cpu, pending_cpu = cpu + spent, 0.0
        if halt:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, elapsed) * g.get("lr_scale", 1.0)
        c0 = time.process_time()
        patches = sampler.batch(cfg.batch)
        loss, parts = backward_on(net, patches, params, baw_on(step, elapsed, cfg), device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        step += 1
        if distributed:   # summed over the ranks at the next agree()
            pending_cpu = time.process_time() - c0
        else:
            cpu += time.process_time() - c0
        now = time.time()
        elapsed = elapsed0 + now - t_start
        if rank == 0 and (now - t_log > 30 or step == cfg.steps):
            rate = (step - step0) / max(now - t_start, 1e-9)
            eta = (cfg.steps - step) / max(rate, 1e-9)
            if cfg.schedule_minutes:
                eta = cfg.schedule_minutes * 60 - elapsed
            log(f"step {step}/{cfg.steps} loss {loss.item():.4f} "
                + " ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
                + (f" | world {n_ranks}" if distributed else "")
                + f" | {rate:.2f} it/s, eta {eta / 60:.1f} min, lr {lr_at(step, cfg, elapsed):.2e}")
            t_log = now
        if val_images and (step % cfg.val_every == 0 or step == cfg.steps):
            run_val()
        if rank == 0 and now - t_save > cfg.save_every_s:
            save_checkpoint(ckpt_path, state_dict())
            t_save = now
    if distributed:   # the last step's CPU seconds, every rank's
        cpu += agree(False, elapsed, device, pending_cpu)[2]
    if rank == 0:   # before the last validation, which a second signal may cut short
        save_checkpoint(ckpt_path, state_dict())
    restore_signals(handlers)
    if val_images and step > step0 and (not history or history[-1]["step"] != step):
        run_val()        # the curve ends where the run ends
        if rank == 0:
            save_checkpoint(ckpt_path, state_dict())
    if rank == 0:
        atomic_write.write_atomic(out / "history.json", json.dumps(history, indent=1).encode(), force=True)
        log(f"saved {ckpt_path} at step {step} ({elapsed / 60:.1f} min of training)"
            + (f"; stopped by {signal.Signals(stop[0]).name}" if stop else ""))
    if distributed:
        dist.barrier()   # the checkpoint is on disk before any rank returns
    return {**state_dict(), "stopped_by": stop[0] if stop else None}


def export_run(run: Path, name: str, val_dir: Path | None, data_note: str = "",
               default: bool = True, replace: bool = False) -> dict:
    """Checkpoint -> weights/ + manifest entry, then measure the exported
    (fp16) model through the real codec on `val_dir`: bpp, PSNR RGB and Y.
    All or nothing: where any step fails, the weights folder is as it was.
    ValueError for a run with no checkpoint or no steps, or a `val_dir`
    with no images."""
    from .. import weights
    ckpt = run / "checkpoint.pt"
    if not ckpt.is_file():
        raise ValueError(f"{run}: no checkpoint.pt (not a run folder, or its run saved nothing yet)")
    if val_dir is not None and not list_images([val_dir]):
        raise ValueError(f"{val_dir}: no images to validate on")
    state = weights.read_checkpoint(ckpt)
    if not state.get("step") and state["model"]:   # (x1's plain AVIF decode has nothing to train)
        raise ValueError(f"{ckpt} is at step 0: train it first")
    cfg = state["train_config"]
    info = {"training_data": data_note or ", ".join(cfg["data"]), "history": state["history"]}
    folder = weights.weights_dir()
    manifest, wfile = folder / weights.MANIFEST, folder / f"{name}.pt"
    before = {p: p.read_bytes() if p.exists() else None for p in (manifest, wfile)}
    try:
        e = weights.export(ckpt, name, folder, info, default=default, replace=replace)
        if cfg.get("base_model"):   # a restoration head (head.py) decodes at its base model's t
            weights.update_entry(name, temperature=cfg["temperature"])
        if val_dir is not None:
            e["validation"] = measure_validation(name, val_dir)
    except BaseException:   # put the folder back: no half-exported model becomes a default
        for p, data in before.items():
            if data is None:
                p.unlink(missing_ok=True)
            else:
                p.write_bytes(data)
        weights.forget_cached()
        raise
    return weights.entry(name)


def measure_validation(name: str, val_dir: Path) -> dict:
    """A registered model through the real codec at its own defaults on
    `val_dir`: mean bpp and PSNR (RGB, Y), written to its manifest entry.
    Run again after changing a model's defaults (weights.update_entry)."""
    from .. import codec, settings, weights
    st = weights.card(name).defaults
    rows = []
    for p in list_images([val_dir]):
        rgb = load_rgb(p)
        data = codec.encode(rgb, st.scale, model=name)
        out, _, _ = codec.decode_array(data)
        rows.append((8 * len(data) / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, out), psnr_y(rgb, out)))
    m = np.mean(rows, axis=0)
    val = {"images": len(rows), "set": str(val_dir), "bpp": round(float(m[0]), 4),
           "psnr_rgb": round(float(m[1]), 3), "psnr_y": round(float(m[2]), 3),
           "note": "whole image through the codec at the model's defaults ("
                   + (f"LR quality {settings.DEFAULT_QUALITY}, " if st.lr_codec == "avif" else "")
                   + f"mask T {st.threshold:g}, Z temperature {st.temperature:g}), no border crop"}
    weights.update_entry(name, validation=val)
    return val


def found_from(cfg: TrainConfig, cwd: str | None) -> TrainConfig:
    """A resumed run's relative --data, --val and --anchor, which are not
    found from here, taken from the folder the run was started in (`cwd`)."""
    def find(d: str) -> str:
        there = Path(cwd or ".", d)
        return str(there) if d and cwd and not Path(d).is_absolute() and not Path(d).exists() \
            and there.exists() else d
    return replace(cfg, data=[find(d) for d in cfg.data], val=[find(d) for d in cfg.val], anchor=find(cfg.anchor))


def field_help(cls) -> dict:
    """Each field's description: the comment on its line in the dataclass
    (one text for the code and --help)."""
    import inspect
    import re
    out, last, column = {}, None, -1
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            last, column = m.group(1), line.rindex("#", 0, m.start(2))
            out[last] = m.group(2).strip()
        elif last and line.find("#") == column and not line[:column].strip():
            out[last] += " " + line[column + 1:].strip()   # the comment goes on, aligned under it
        else:
            last = None
    return out


def _add_dataclass_args(parser, cls, skip=()):
    helps = field_help(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        kind = type(f.default) if f.default is not None and not callable(f.default_factory) else list
        h = helps.get(f.name, "").replace("%", "%%")   # argparse formats help with %
        flag = f"--{f.name.replace('_', '-')}"
        if kind is list:
            parser.add_argument(flag, nargs="+", default=[], help=h)
            continue
        with_default = f"{h} (default: {f.default})" if h else None
        if kind is bool:        # --name / --no-name: type=bool would read "False" as true
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=with_default)
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=with_default)


HEAD_FIELDS = ("head_width", "head_blocks", "head_dilated", "head_dilation")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (argparse prints its whole usage
    first, forty lines for training), as rescodec's own commands say it."""
    def error(self, message):
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def main(argv=None, prog: str = "python -m rescodec.training") -> int:
    p = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoint.pt, history.json")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoint.pt")
    _add_dataclass_args(p, FlowConfig, skip=HEAD_FIELDS)   # the head is trained apart (head.py)
    _add_dataclass_args(p, TrainConfig)
    p.set_defaults(z_std=None)   # None: the --init-from model's, else FlowConfig's
    a = vars(p.parse_args(argv))
    p._defaults.clear()
    for action in p._actions:   # parsed again with no defaults: the options given, even at their default
        action.default = argparse.SUPPRESS
    named = set(vars(p.parse_args(argv)))
    z_std_given = a["z_std"] is not None
    if not z_std_given:
        a["z_std"] = FlowConfig.z_std
    flow_cfg = FlowConfig(**{f.name: a[f.name] for f in fields(FlowConfig) if f.name not in HEAD_FIELDS})
    cfg = TrainConfig(**{f.name: a[f.name] for f in fields(TrainConfig)})
    init = {}   # the --init-from file's state, read once here
    if cfg.init_from:
        try:
            cfg.init_from, init = read_init(cfg.init_from)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    missing = [d for d in cfg.data + cfg.val + ([cfg.anchor] if cfg.anchor else []) if not Path(d).exists()]
    if missing:   # a typo would be skipped: no data from it, or no validation
        print(f"error: {missing[0]}: no such file or folder", file=sys.stderr)
        return 2
    empty = [d for d in cfg.val if not list_images([d])]
    if empty:   # validation asked for and none would run
        print(f"error: --val {empty[0]}: no images", file=sys.stderr)
        return 2
    if a["out"].exists() and not a["out"].is_dir():
        print(f"error: --out {a['out']} is a file; it names the run's folder", file=sys.stderr)
        return 2
    if flow_cfg.scale == 1:
        print("error: x1 has no flow to train: train its restoration head with "
              "python -m rescodec.training.head --scale 1", file=sys.stderr)
        return 2
    held = (a["out"] / "checkpoint.pt").exists()
    if held != a["resume"]:   # a forgotten --resume would start the run again over it
        print(f"error: {a['out']} already holds a run (checkpoint.pt): continue it with --resume, or choose "
              f"another --out" if held else f"error: --resume, but {a['out']} holds no checkpoint.pt",
              file=sys.stderr)
        return 2
    if a["resume"]:
        # the saved configs win, so a resumed run is the same run
        try:
            state = torch.load(a["out"] / "checkpoint.pt", map_location="cpu", weights_only=False)
            if "base_model" in state.get("train_config", {}):   # training.head's: it has no --resume
                print(f"error: {a['out']} is a restoration head's run (python -m rescodec.training.head), "
                      "which cannot be resumed: start one with --init-from "
                      f"{a['out'] / 'checkpoint.pt'} and another --out", file=sys.stderr)
                return 2
            saved_flow = FlowConfig(**state["flow_config"])
            # runs saved before --z-temperature-min trained every patch at --z-temperature
            saved = TrainConfig(**{"z_temperature_min": state["train_config"].get("z_temperature", 0.0),
                                   **state["train_config"]})
            state["optim"], state["model"]
        except Exception as e:   # whatever torch.load raises on a file that is not one of ours
            print(f"error: {a['out'] / 'checkpoint.pt'}: not a training checkpoint ({type(e).__name__})",
                  file=sys.stderr)
            return 1
        saved.minutes, saved.device = cfg.minutes, cfg.device   # this invocation's own
        asked, flow_cfg = flow_cfg, saved_flow
        given = [f.name for f in fields(TrainConfig) if f.name in named and f.name not in ("minutes", "device")
                 and getattr(cfg, f.name) != getattr(saved, f.name)]
        given += [f.name for f in fields(FlowConfig) if f.name in named and f.name not in HEAD_FIELDS
                  and getattr(asked, f.name) != getattr(flow_cfg, f.name)]
        if given:
            print(f"note: --resume continues the run as it was saved; "
                  f"{', '.join('--' + n.replace('_', '-') for n in given)} left as saved", file=sys.stderr)
        cfg = found_from(saved, state.get("cwd"))
        missing = [d for d in cfg.data + cfg.val + ([cfg.anchor] if cfg.anchor else []) if not Path(d).exists()]
        if missing:
            print(f"error: {missing[0]} (the run's data): no such file or folder", file=sys.stderr)
            return 2
    elif cfg.init_from and not z_std_given:
        # a model trained for a sampled Z keeps its units of t
        flow_cfg.z_std = init.get("flow_config", {}).get("z_std", FlowConfig.z_std)
    if cfg.z_temperature > 0 and flow_cfg.z_std == 1.0:
        print("warning: --z-temperature with z_std 1: a unit-spread Z is far beyond the forward's "
              "(about 0.006); give --z-std 0 to measure it", file=sys.stderr)
    try:
        flow_cfg.validate()
        cfg.validate(flow_cfg.scale)
        if cfg.anchor:
            check_anchor(cfg.anchor, flow_cfg.scale)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    distributed = init_distributed(cfg.device)
    made = not a["out"].exists()
    try:
        done = train(flow_cfg, cfg, a["out"], resume=a["resume"], init=init or None,
                     log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    except (RscError, OSError, InitError, NoImages) as e:   # an unreadable image in --data or --val, a
        # folder it cannot write, an --init-from of which nothing fits, no images
        print(f"error: {e}", file=sys.stderr)
        drop_empty_run(a["out"], made)
        return 1
    finally:
        if distributed:
            close_distributed()
    return 128 + done["stopped_by"] if done["stopped_by"] else 0   # saved, but stopped: as a shell counts it


if __name__ == "__main__":
    sys.exit(main())

"""Encoder-side refinement of the LR image: HCD, Algorithm 1
(../shared/papers/hcd-*.txt), run against rescodec's exact decoder.

    phase 1 (N steps): delta_y on the HR input, through forward then inverse
    phase 2 (N steps): delta_x on the LR image, through the inverse only
    each step: delta <- Clip_eps(delta - alpha * g / ||g||)

Unlike the paper, which draws a fresh Z at every step, the decoder here is
deterministic: Z comes from the stored seed and temperature and B from the
stored mask, so we optimise against exactly those, with the 8-bit rounding of
the LR as a straight-through estimator.  eps and alpha are RMS per pixel (on
the 0..1 scale), so one setting fits every image size:
||delta||_2 <= eps * sqrt(n) and a step moves delta by alpha * sqrt(n).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .flow import RescaleFlow

DEFAULT_ITERS = 10       # per phase; 15 (the paper's) gained no more at x2
DEFAULT_EPS = 0.0025     # RMS radius of each perturbation (measured, BENCHMARKS.md "HCD")
DEFAULT_ALPHA = 0.0005   # RMS step; 0.02 / 0.004 gained 10x less at x2
# per scale (eps, alpha): at x16 the defaults grew files by 2.08% on val, over
# the 2% budget; 0.0015 / 0.0003 gives +1.22% for 0.04 dB less gain
SCALE_SETTINGS = {16: (0.0015, 0.0003)}


def settings_for(scale: int) -> tuple[float, float]:
    return SCALE_SETTINGS.get(scale, (DEFAULT_EPS, DEFAULT_ALPHA))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def _round8(y: torch.Tensor) -> torch.Tensor:
    q = torch.round(y.clamp(0, 1) * 255) / 255
    return y + (q - y).detach()


def _step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    n = math.sqrt(delta.numel())
    g = grad / grad.norm().clamp_min(1e-12)
    delta = delta - alpha * n * g
    norm = delta.norm()
    radius = eps * n
    return delta * (radius / norm) if norm > radius else delta


def refine_lr(net: RescaleFlow, hr: torch.Tensor, b: torch.Tensor, z: torch.Tensor, iters: int,
              eps: float = DEFAULT_EPS, alpha: float = DEFAULT_ALPHA, device: str = "auto",
              progress=None) -> tuple[torch.Tensor, float, float]:
    """hr (1,3,H,W) in [0,1], padded to the scale; b, z as the decoder builds
    them.  -> (8-bit LR as float in [0,1], PSNR before, PSNR after), keeping
    the unrefined LR when refinement does not help."""
    dev = pick_device(device)
    net = net.to(dev)
    hr, b, z = hr.to(dev), b.to(dev), z.to(dev)
    for p in net.parameters():
        p.requires_grad_(False)

    def decode(lr):
        return net.inverse(torch.cat([lr, b, z], dim=1)).clamp(0, 1)

    def psnr_of(lr):
        with torch.no_grad():
            mse = F.mse_loss(torch.round(decode(lr) * 255) / 255, hr).item()
        return 10 * math.log10(1 / max(mse, 1e-12))

    with torch.no_grad():
        lr0 = torch.round(net(hr)[:, :3].clamp(0, 1) * 255) / 255
    before = psnr_of(lr0)
    # phase 1: collaborative HR example
    # Fixed-size normalised steps oscillate near the optimum, so each phase
    # keeps its best iterate (measured: BENCHMARKS.md "HCD").
    dy, best = torch.zeros_like(hr), (float("inf"), None)
    for t in range(iters):
        dy.requires_grad_(True)
        lr = _round8(net(hr + dy)[:, :3])
        loss = F.mse_loss(decode(lr), hr)
        (g,) = torch.autograd.grad(loss, dy)
        if loss.item() < best[0]:
            best = (loss.item(), dy.detach())
        dy = _step(dy.detach(), g, alpha, eps)
        if progress:
            progress(t + 1, 2 * iters, 10 * math.log10(1 / max(loss.item(), 1e-12)))
    with torch.no_grad():
        x = net(hr + best[1])[:, :3].clamp(0, 1)
    # phase 2: collaborative LR example
    dx, best = torch.zeros_like(x), (float("inf"), None)
    for t in range(iters + 1):
        dx.requires_grad_(True)
        loss = F.mse_loss(decode(_round8(x + dx)), hr)
        if loss.item() < best[0]:
            best = (loss.item(), dx.detach())
        if t == iters:       # the last step's result is only scored
            break
        (g,) = torch.autograd.grad(loss, dx)
        dx = _step(dx.detach(), g, alpha, eps)
        if progress:
            progress(iters + t + 1, 2 * iters, 10 * math.log10(1 / max(loss.item(), 1e-12)))
    lr1 = torch.round((x + best[1]).clamp(0, 1) * 255) / 255
    after = psnr_of(lr1)
    net.to("cpu")
    if after <= before:
        return lr0.cpu(), before, before
    return lr1.cpu(), before, after

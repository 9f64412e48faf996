"""Encoder-side refinement of the LR image against rescodec's exact decoder.

Two methods (`method`):

rd (default): rate-distortion descent on the LR itself (not in the papers).
    A lossless LR may be any 8-bit LR; this searches for the one that
    minimises  MSE(decode(LR), HR) + lam * R(LR),
    R = lr_quant.rate_proxy (the rate term of training), with Adam on a
    continuous LR (8-bit rounding as a straight-through estimator) and a
    warmed-up cosine step from RD_STEP to 0.  lam per scale is JPEG's local slope on the
    val set, turned into MSE per proxy unit (RD_LAMBDA), so bits are bought
    only where they buy more PSNR than JPEG would get from them.

hcd: HCD, Algorithm 1 (../shared/papers/hcd-*.txt).
    phase 1 (N steps): delta_y on the HR input, through forward then inverse
    phase 2 (N steps): delta_x on the LR image, through the inverse only
    each step: delta <- Clip_eps(delta - alpha * g / ||g||)
    Unlike the paper, which draws a fresh Z at every step, the decoder here is
    deterministic, so we optimise against exactly its Z and B.  eps and alpha
    are RMS per pixel (on the 0..1 scale), so one setting fits every image
    size: ||delta||_2 <= eps * sqrt(n) and a step moves delta by alpha * sqrt(n).

Both score against the decoder's own Z (stored seed and temperature) and B
(the stored mask), with the LR as it will be stored: rounded to the LR
step's grid (lr_quant.lr_grid; step 1: 8 bits), or, for an AVIF LR, through
AVIF's round trip with a straight-through gradient and no rate term (lam =
0: a rate term only slid along AVIF's own curve; BENCHMARKS.md, "Refinement
on the AVIF LR").
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from .flow import RescaleFlow
from . import lossy_lr
from .lr_quant import lr_grid, rate_proxy
from .settings import EncodeSettings

DEFAULT_METHOD = EncodeSettings.refine_method

# rd: Adam steps, the peak step size (0..1 scale, cosine to 0) and the rate
# weight per scale.  RD_LAMBDA = JPEG's slope d(MSE)/d(bpp) on the val set at
# the model's own size, times d(bpp)/d(proxy) = 3 * 1.49 / s^2 (the proxy's
# fit, CHANGELOG.md, 0.1.0); x16, below JPEG's smallest files, takes x8's slope.
# Measured choices: CHANGELOG.md, 0.1.0 (refinement).
RD_ITERS = 40
RD_STEP = 0.004
RD_WARMUP = 5    # Adam's first steps move every pixel by the full step: -3 dB at once without it
RD_LAMBDA = {2: 1.4e-4, 4: 7e-4, 8: 1.3e-3, 16: 6e-4}
# (scale, LR step, LR space) where the default model's size differs enough to
# move JPEG's slope: a model at step 8 sits at 1.7 bpp, not 3 (CHANGELOG.md, 0.1.0).
# YCbCr codes: 2.1 bits per proxy unit, not 1.49, and JPEG steeper at the
# smaller files; half the computed lambdas measured best (x4: +1.25 dB against
# +1.22 and +1.21 at 2e-3 and 5e-4; x2: +0.88 against +0.81 at 1.6e-3;
# CHANGELOG.md, 0.1.0)
RD_LAMBDA_AT_STEP = {(2, 8, "rgb"): 5e-4, (2, 7, "ycc"): 8e-4, (4, 4, "ycc"): 1e-3}

DEFAULT_ITERS = 10       # HCD, per phase; 15 (the paper's) gained no more at x2
DEFAULT_EPS = 0.0025     # RMS radius of each perturbation (measured; CHANGELOG.md, 0.2.0, "benchmark hcd")
DEFAULT_ALPHA = 0.0005   # RMS step; 0.02 / 0.004 gained 10x less at x2
# per scale (eps, alpha): at x16 the defaults grew files by 2.08% on val, over
# the 2% budget; 0.0015 / 0.0003 gives +1.22% for 0.04 dB less gain
SCALE_SETTINGS = {16: (0.0015, 0.0003)}
# Back-propagating through forward and inverse keeps ~2-3 KB per HR pixel
# (measured: a whole 4 MP image peaked at 7.5 GB at x2, 12 GB at x16), so
# images above REFINE_WHOLE_MAX_PIXELS (a 768x512 photo still fits, 1.5 GB at x16)
# run in tiles of TILE_EXT_HR a side, context included (CHANGELOG.md, 0.1.0,
# tiled refinement: at most 1.6 GB with 640; 576 leaves room for the arrays of
# a 24 MP photo).
REFINE_WHOLE_MAX_PIXELS = 640 * 640
TILE_EXT_HR = 576


def default_steps(method: str) -> int:
    """The descent's steps for refine=True (settings.refine_steps)."""
    return RD_ITERS if method == "rd" else DEFAULT_ITERS


def steps_of(method: str, iters: int) -> int:
    """Progress steps of one refinement (HCD runs two phases)."""
    return 2 * iters if method == "hcd" else iters


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


def _step(delta: torch.Tensor, grad: torch.Tensor, alpha: float, eps: float,
          count: int) -> torch.Tensor:
    """One normalised step and the projection on the eps ball; `count` is the
    number of entries that move (RMS per entry, see the module docstring)."""
    n = math.sqrt(count)
    g = grad / grad.norm().clamp_min(1e-12)
    delta = delta - alpha * n * g
    norm = delta.norm()
    radius = eps * n
    return delta * (radius / norm) if norm > radius else delta


def refine_lr(net: RescaleFlow, hr: torch.Tensor, decoder_input, settings: EncodeSettings,
              progress=None, context: torch.Tensor | None = None, core=None
              ) -> tuple[torch.Tensor, float, float]:
    """hr (1,3,H,W) in [0,1], padded to the scale; decoder_input(lr): the
    inverse's input [lr | B | Z] exactly as the decoder builds it; settings:
    the file's (resolved) settings: LR step and space, and refine_steps (HCD
    steps per phase, or rd steps), refine_method, refine_eps / _alpha (hcd) and
    refine_lambda (rd's rate weight; None: the scale's RD_LAMBDA).
    -> (LR on the step's grid as float in [0,1], PSNR before, PSNR after),
    keeping the unrefined LR when refinement does not lower the method's cost.
    Works on its own copy of `net`, so a cached model is never changed.

    For a tile: `context` is the current 8-bit LR of the whole tile and `core`
    (rows, cols) the LR slices this tile owns.  Only the core may change and
    only its HR pixels are scored; the rest stays at `context`, which is what
    the decoder will see there."""
    iters, method, step, space = (settings.refine_steps, settings.refine_method, settings.lr_step,
                                  settings.lr_space)
    s = net.config.scale
    eps, alpha = settings_for(s)
    eps, alpha = settings.refine_eps or eps, settings.refine_alpha or alpha
    dev = pick_device(settings.device)
    net = copy.deepcopy(net).to(dev).requires_grad_(False)
    hr = hr.to(dev)
    if core is None:
        keep, hr_rows, hr_cols = None, slice(None), slice(None)
    else:
        keep = torch.zeros(1, 1, hr.shape[-2] // s, hr.shape[-1] // s, device=dev)
        keep[..., core[0], core[1]] = 1
        context = context.to(dev)
        hr_rows = slice(core[0].start * s, core[0].stop * s)
        hr_cols = slice(core[1].start * s, core[1].stop * s)

    def own(lr):            # the tile's own pixels from lr, the rest from context
        return lr if keep is None else keep * lr + (1 - keep) * context

    def decode(lr):         # the decoder's output on the pixels this call scores
        return net.restore(net.inverse(decoder_input(lr))).clamp(0, 1)[..., hr_rows, hr_cols]

    target = hr[..., hr_rows, hr_cols]

    def err(lr):
        return F.mse_loss(decode(lr), target)

    def delivered_mse(lr):  # of what the decoder delivers: its output rounded to 8 bits
        with torch.no_grad():
            return F.mse_loss(torch.round(decode(lr) * 255) / 255, target).item()

    def psnr_of(mse):
        return 10 * math.log10(1 / max(mse, 1e-12))

    lossy = settings.lr_codec == "avif"
    if lossy:   # straight through the real codec; the LR returned is the one to give it
        # each step round-trips at speed 3 or faster: at --refine's speed 0 a
        # step would take 1.5-2 s for a 384x256 LR; the file is still coded at 0
        loop_speed = max(settings.avif_speed, lossy_lr.SPEED)

        def stored(y):
            return lossy_lr.round_trip(y, [settings.lr_quality], loop_speed)[0]
        seen, lam = stored, 0.0

        def rate(y):
            return torch.zeros(())
    else:       # the grid's rounding is idempotent: the LR returned is on the grid
        def stored(y):
            return lr_grid(y, step, space)

        def seen(y):
            return y

        def rate(y):
            return rate_proxy(y, step, space)
        lam = settings.refine_lambda
        lam = RD_LAMBDA_AT_STEP.get((s, step, space), RD_LAMBDA[s]) if lam is None else lam
    if keep is None:        # a tile starts from its context: no forward pass
        with torch.no_grad():
            start = net(hr)[:, :3].clamp(0, 1)
        lr0 = start if lossy else stored(start)
    else:
        start = lr0 = context
    mse0 = delivered_mse(seen(lr0))
    if method == "hcd":
        lr1 = _hcd(net, hr, own, err, keep, iters, eps, alpha, progress, stored, lossy)
        mse1 = delivered_mse(seen(lr1))
        better = mse1 < mse0
    else:
        def cost(lr):       # -> (MSE + lam * R, MSE): the module docstring's objective
            mse = err(lr)
            return mse + lam * rate(lr), mse
        lr1 = _rd(own, cost, start, iters, progress, stored, lossy)
        mse1 = delivered_mse(seen(lr1))
        with torch.no_grad():   # judged on the rounded output, so lam = 0 never lowers PSNR
            better = (mse1 + lam * rate(seen(lr1)).item()
                      < mse0 + lam * rate(seen(lr0)).item())
    before = psnr_of(mse0)
    if not better:
        return lr0.cpu(), before, before
    return lr1.cpu(), before, psnr_of(mse1)


def _rd(own, cost, start: torch.Tensor, iters: int, progress, stored, lossy: bool) -> torch.Tensor:
    """Adam on a continuous LR, step warmed up over RD_WARMUP steps, then
    cosine from RD_STEP to 0; the best iterate by cost(stored(lr))[0]: on the
    LR step's grid, or (lossy) before the codec.  start: the continuous
    forward LR (or a tile's context).  progress gets the PSNR of the error
    term, cost(lr)[1] (the rate is not in it)."""
    lr = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([lr], lr=RD_STEP)   # the same on any LR step (CHANGELOG.md, 0.1.0)
    best = (float("inf"), None)
    for t in range(iters + 1):
        x = own(lr)
        q = stored(x)
        loss, mse = cost(q)
        if best[1] is None or loss.item() < best[0]:   # a NaN loss (a side of 1 pixel) keeps the first
            best = (loss.item(), (x if lossy else q).detach())
        if t == iters:       # the last step's result is only scored
            break
        for group in opt.param_groups:
            group["lr"] = (RD_STEP * min(1.0, (t + 1) / RD_WARMUP)
                           * 0.5 * (1 + math.cos(math.pi * t / iters)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(t + 1, iters, -10 * math.log10(max(mse.item(), 1e-12)))
    return best[1] if lossy else stored(best[1])


def _hcd(net, hr, own, err, keep, iters: int, eps: float, alpha: float, progress, stored,
         lossy: bool) -> torch.Tensor:
    """HCD's two phases, each keeping its best iterate."""
    # phase 1: collaborative HR example
    # Fixed-size normalised steps oscillate near the optimum, so each phase
    # keeps its best iterate (measured; CHANGELOG.md, 0.2.0, "benchmark hcd").
    dy, best = torch.zeros_like(hr), (float("inf"), None)
    for t in range(iters):
        dy.requires_grad_(True)
        loss = err(stored(own(net(hr + dy)[:, :3])))
        (g,) = torch.autograd.grad(loss, dy)
        if best[1] is None or loss.item() < best[0]:
            best = (loss.item(), dy.detach())
        dy = _step(dy.detach(), g, alpha, eps, dy.numel())
        if progress:
            progress(t + 1, 2 * iters, 10 * math.log10(1 / max(loss.item(), 1e-12)))
    with torch.no_grad():
        x = own(net(hr + best[1])[:, :3].clamp(0, 1))
    # phase 2: collaborative LR example, on the core only
    moving = x.numel() if keep is None else int(keep.sum().item()) * x.shape[1]
    dx, best = torch.zeros_like(x), (float("inf"), None)
    for t in range(iters + 1):
        dx.requires_grad_(True)
        loss = err(stored(x + (dx if keep is None else keep * dx)))
        if best[1] is None or loss.item() < best[0]:
            best = (loss.item(), dx.detach())
        if t == iters:       # the last step's result is only scored
            break
        (g,) = torch.autograd.grad(loss, dx)
        dx = _step(dx.detach(), g, alpha, eps, moving)
        if progress:
            progress(iters + t + 1, 2 * iters, 10 * math.log10(1 / max(loss.item(), 1e-12)))
    d = best[1] if keep is None else keep * best[1]
    return x + d if lossy else stored(x + d)


def refine_tiled(net: RescaleFlow, padded, lr: torch.Tensor, decoder_input,
                 settings: EncodeSettings, progress=None) -> tuple[torch.Tensor, float, float]:
    """refine_lr for images too big to back-propagate whole, in bounded memory.

    Tiles of TILE_EXT_HR HR pixels a side, tiling.margin_lr plus the head's reach of them context, in
    raster order; each tile refines its core against the current LR of its
    context, so later tiles see the refined earlier ones.  padded: HR uint8
    (H, W, 3); lr: the plain LR on the step's grid (1,3,h,w); decoder_input:
    the image's latent.DecoderInput.  The PSNRs returned pool the tiles' core errors, each
    measured when its tile was refined (an estimate for the whole image)."""
    from .tiling import margin_lr, tiles, to_tensor
    s = net.config.scale
    h, w = lr.shape[-2:]
    lr = lr.clone()
    m = margin_lr(net) + net.head_reach
    core = max(TILE_EXT_HR // s - 2 * m, 8)       # LR pixels; a wide context still leaves a core
    parts = tiles(h, w, core, m)
    sse_before = sse_after = 0.0
    for k, t in enumerate(parts):
        rows, cols = t.window()
        tick = None
        if progress:
            def tick(i, n, p, k=k):
                progress(k * n + i, len(parts) * n, p)
        out, before, after = refine_lr(
            net, to_tensor(padded[t.window(s)]), lambda y, r=rows, c=cols: decoder_input(y, r, c),
            settings, tick, context=lr[..., rows, cols], core=t.core_in_window())
        lr[(..., *t.core())] = out[(..., *t.core_in_window())]
        px = t.core_pixels
        sse_before += px * 10 ** (-before / 10)
        sse_after += px * 10 ** (-after / 10)
    n = h * w
    return lr, 10 * math.log10(n / sse_before), 10 * math.log10(n / sse_after)

"""The LR through a lossy image codec: AVIF (AV1 intra) through Pillow, 4:4:4.

The LR is 90-95 % of a file whose LR is stored losslessly; a transform codec
spends those bits far better (README, "How it works").

A file stores the AV1 item of Pillow's AVIF (av1_item.split); the decoder
builds the same AVIF again (av1_item.wrap) and decodes it here, with
Pillow, and `rescodec thumb` gives the LR as a viewable picture.

Training round-trips LR patches through the same encoder (`round_trip`) with a
straight-through gradient (SAIN's "real codec in the loop"), so the flow's
inverse learns to reconstruct from what the decoder will really read.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

from .errors import CorruptError
from .images import pillow_limit
from .warnings_lock import caught_warnings

# libaom speed: 3 in files (4 for x1 from AVIF quality 61, below).  On x2
# flow LRs of 240x160 at the same PSNR it takes 1.2 % fewer bytes than speed
# 4 (the baselines' setting) and 9 % fewer than speed 6, at 1.9x and 11x
# their time (0.65 s against 0.35 and 0.06 s); the whole codec: 1.4 % (x2)
# and 0.9 % (x4) fewer than speed 4 (BENCHMARKS.md, "LR codec").  Training
# round-trips millions of small patches, so it uses TRAIN_SPEED; the decoder
# is the same for all.
SPEED = 3
TRAIN_SPEED = 6
# x1 from AVIF quality 61 (`-q 86-100`): the full-size photo at speed 3 takes
# 1.5-2.5 s for 768x512, over the 1.5 s we aim at; speed 4 halves that for
# about 1 % more bytes at the same PSNR (BENCHMARKS.md, "AVIF speed 4 from
# AVIF quality 61").
FAST_X1_FROM = 61
FAST_X1_SPEED = 4
# --refine, which may take seconds: speed 0, libaom's slowest.  At the same size
# it is ahead of speed 3 on 11 photos no model was trained on by +0.06 /
# +0.06 / +0.03 dB at x2 (LR quality 0 / 12 / 27) and +0.10 / +0.08 at x4
# (1 / 5), more than the descent on the LR gains (BENCHMARKS.md, "Refinement
# on the AVIF LR"), for 0.5-2 s more at x2 and x4 (768x512); x1: 5 s at AVIF
# quality 40 and 12 s at 90, against 1.1 and 1.2 at 3 and 4, for +0.03 to
# +0.09 dB on 10 held-out photos at AVIF quality 20-60 ("`--refine` at x1").
REFINE_SPEED = 0


def default_speed(scale: int, quality: int, refine: bool = False) -> int:
    """The AVIF speed a file is encoded at when none is asked for."""
    if refine:
        return REFINE_SPEED
    return FAST_X1_SPEED if scale == 1 and quality >= FAST_X1_FROM else SPEED


# libaom's tuning: libavif's default (tune=iq here, libavif 1.4) aims at what
# people see; the flow's inverse is trained for, and judged by, PSNR.  With
# tune=psnr the whole codec is 0.36 dB (x2) and 0.17 dB (x4) better at equal
# bytes on training photos (BENCHMARKS.md, "LR codec"); bench also reports
# full-size AVIF with the same tuning.
TUNE = "psnr"
# libaom's AB partitions (a block split in three) stay in the search.  Pruning
# them at speed 3 takes 6 % off the encode of the timing photo at -q 75 and
# costs 0.24 points of BD-rate against AVIF on val; it meets no speed aim
# there, so files keep them (BENCHMARKS.md, "LR codec").  From speed 5 libaom
# prunes them itself.
PRUNE_AB_PARTITIONS = False
# libaom's output depends on its thread count (1 thread and 2+ threads give
# different bytes for the same image): pinned, so an encode is the same on every
# machine.  2: both of a 2-core machine's cores.
THREADS = 2


# libavif's decoder refuses a picture with a side over MAX_SIDE (its image
# dimension limit) or more than MAX_PIXELS pixels (its size limit, 16384^2):
# at x1 the photo itself is checked (encoder.x1_fits); at x2 and up a small
# picture that large needs a photo of over 2^30 pixels, 8 times the default
# --max-pixels.
MAX_SIDE, MAX_PIXELS = 32768, 1 << 28


def too_large(height: int, width: int) -> str | None:
    """Why libavif cannot decode a picture of this size, or None where it can."""
    if max(height, width) <= MAX_SIDE and height * width <= MAX_PIXELS:
        return None
    return f"AVIF decodes at most {MAX_SIDE} pixels a side and {MAX_PIXELS} in all"


def encode(rgb: np.ndarray, quality: int, speed: int | None = None, prune_ab: bool | None = None) -> bytes:
    """uint8 (h, w, 3) -> AVIF bytes, 4:4:4, 8 bits, tuned for PSNR; speed None:
    SPEED; prune_ab None: PRUNE_AB_PARTITIONS (benchmark lr-codecs compares)."""
    speed = SPEED if speed is None else speed
    prune_ab = PRUNE_AB_PARTITIONS if prune_ab is None else prune_ab
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buf, "AVIF", quality=int(quality), speed=speed, subsampling="4:4:4", max_threads=THREADS,
        advanced={"tune": TUNE, **({"enable-ab-partitions": "0"} if prune_ab else {})})
    return buf.getvalue()


def decode(data: bytes, shape: tuple, where: str = "LR") -> np.ndarray:
    """AVIF bytes -> uint8 array of exactly `shape` (h, w, 3); anything else is CorruptError."""
    h, w = shape[:2]
    try:   # the header's size passed rescodec's own pixel limit; x1's picture is the photo
        with pillow_limit(h * w):
            with caught_warnings():   # Image.open is what warns
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data), formats=["AVIF"])
            if im.size != (w, h):          # checked before pixels are decoded
                raise CorruptError(f"corrupt .rsc file ({where} section: {im.size} != {(w, h)})")
            arr = np.asarray(im.convert("RGB")).reshape(shape)
    except CorruptError:
        raise
    except Exception as e:  # Pillow raises many types on damaged data
        said = f": {' '.join(str(e).split())[:100]}" if str(e) else ""
        raise CorruptError(f"corrupt .rsc file ({where} section: {type(e).__name__}{said})") from None
    return arr


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(N, 3, h, w) floats in [0, 1] -> (N, h, w, 3) uint8, what the codec is given."""
    return (y.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _dct8() -> torch.Tensor:
    """The 64 basis images of the orthonormal 8x8 DCT-II, as conv filters."""
    n = torch.arange(8, dtype=torch.float64)
    c = torch.cos(torch.pi * (2 * n[None] + 1) * n[:, None] / 16) * (2 / 8) ** 0.5
    c[0] /= 2 ** 0.5
    return torch.einsum("ki,lj->klij", c, c).reshape(64, 1, 8, 8).float()


_DCT8 = _dct8()


def rate_proxy(y: torch.Tensor) -> torch.Tensor:
    """Differentiable stand-in for the AVIF bits of the LR: 0.6 log2(1 + the
    mean magnitude of its 8x8 DCT AC coefficients) (YCbCr, 0..255 scale), per
    image, averaged.  On flow and Lanczos LRs of 8 photos log(AVIF bpp)
    follows 0.53-0.67 x log(mean |AC|) at qualities 30-60, correlation
    0.95-0.98 (BENCHMARKS.md, "A rate term for the AVIF LR")."""
    from .lr_quant import _ycc
    v = _ycc(y)
    h, w = v.shape[-2] // 8 * 8, v.shape[-1] // 8 * 8
    c = torch.nn.functional.conv2d(v[..., :h, :w].reshape(-1, 1, h, w), _DCT8.to(v), stride=8)
    ac = c[:, 1:].reshape(v.shape[0], -1).abs().mean(dim=1)
    return 0.6 * torch.log2(1 + ac).mean()   # 1 +: bounded below, so flattening the LR has a floor


def round_trip(y: torch.Tensor, qualities, speed: int | None = None,
               workers: int = 1) -> tuple[torch.Tensor, list[int]]:
    """The LR as the decoder reads it, patch by patch at its own quality, with a
    straight-through gradient; also the bytes of each patch's AVIF.  workers > 1:
    that many patches at once (libaom and Pillow release the GIL), same result."""
    def one(args):
        patch, q = args
        data = encode(patch, int(q), speed)
        return decode(data, patch.shape), len(data)

    jobs = list(zip(to_uint8(y), qualities))
    done = _pool(workers).map(one, jobs) if workers > 1 else map(one, jobs)
    out, sizes = zip(*done)
    dec = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)
    dec = dec.to(y.device, y.dtype).contiguous(memory_format=torch.channels_last)
    return y + (dec - y).detach(), list(sizes)


_POOLS: dict = {}


def _pool(workers: int):
    """One thread pool per size, kept for the process's life (a training run's)."""
    from concurrent.futures import ThreadPoolExecutor
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="avif")
    return _POOLS[workers]

"""The LR through a lossy image codec: AVIF (AV1 intra) through Pillow, 4:4:4.

The LR is 90-95 % of a file whose LR is stored losslessly; a transform codec
spends those bits far better (README, "How it works").  The payload is a plain
AVIF file, so the LR stays a viewable thumbnail (`rescodec thumb`).

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

MIN_QUALITY, MAX_QUALITY = 0, 100
# libaom speed: 4 in files, the baselines' own setting: 5 % fewer bytes than
# speed 6 on flow LRs at the same PSNR, at 6x its time (0.22 s against 0.04 s
# for a 240x160 LR; BENCHMARKS.md, "LR codec").  Training round-trips millions
# of small patches, so it uses TRAIN_SPEED; the decoder is the same for both.
SPEED = 4
TRAIN_SPEED = 6
# libaom's output depends on its thread count (1 thread and 2+ threads give
# different bytes for the same image): pinned, so an encode is the same on every
# machine.  2: both of a 2-core machine's cores.
THREADS = 2


def encode(rgb: np.ndarray, quality: int, speed: int = SPEED) -> bytes:
    """uint8 (h, w, 3) -> AVIF bytes, 4:4:4, 8 bits."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buf, "AVIF", quality=int(quality), speed=speed, subsampling="4:4:4", max_threads=THREADS)
    return buf.getvalue()


def decode(data: bytes, shape: tuple, where: str = "LR") -> np.ndarray:
    """AVIF bytes -> uint8 array of exactly `shape` (h, w, 3); anything else is CorruptError."""
    h, w = shape[:2]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["AVIF"])
            if im.size != (w, h):          # checked before pixels are decoded
                raise CorruptError(f"corrupt .rsc file ({where} section: {im.size} != {(w, h)})")
            arr = np.asarray(im.convert("RGB"))
    except CorruptError:
        raise
    except Exception as e:  # Pillow raises many types on damaged data
        raise CorruptError(f"corrupt .rsc file ({where} section: {type(e).__name__})") from None
    return arr.reshape(shape)


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


def round_trip(y: torch.Tensor, qualities, speed: int = SPEED) -> tuple[torch.Tensor, list[int]]:
    """The LR as the decoder reads it, patch by patch at its own quality, with a
    straight-through gradient; also the bytes of each patch's AVIF."""
    out, sizes = [], []
    for patch, q in zip(to_uint8(y), qualities):
        data = encode(patch, int(q), speed)
        out.append(decode(data, patch.shape))
        sizes.append(len(data))
    dec = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)
    dec = dec.to(y.device, y.dtype).contiguous(memory_format=torch.channels_last)
    return y + (dec - y).detach(), sizes

"""Lossless storage of the LR image (its codes on the LR step's grid) and of the
alpha plane.

Every candidate codec is tried and the smallest output kept; its id is the
first payload byte (container.py).  Measured on the val set (BENCHMARKS.md,
"Storage"): lossless JPEG XL is smallest on almost every LR image, 4-9% below
lossless WebP; PNG or WebP win only now and then, by a few bytes.
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import torch
import zstandard
from PIL import Image

from .errors import CorruptError

PNG, WEBP, ZSTD, JXL, JXL_PLANES = 0, 1, 2, 3, 4
CODEC_NAMES = {PNG: "png", WEBP: "webp-lossless", ZSTD: "zstd-raw", JXL: "jpegxl-lossless",
               JXL_PLANES: "jpegxl-lossless-planes"}
# JXL_PLANES: the three channels stacked vertically as one grey image.  On
# YCbCr codes, already decorrelated, it is 1-2 % smaller than JXL's own colour
# transforms (BENCHMARKS.md, "Session 12"); on RGB codes it rarely wins.
_WEBP_MAX_SIDE = 16383      # WebP's own limit; larger images skip that candidate
# JPEG XL's effort: 9 is 4.4% smaller than 5 on LR codes at step 8 (x2) and
# 2.4% at step 5 (x4), but up to 2% larger on some 8-bit LRs (x16); decoding
# is as fast.  So both are tried and the smaller kept; above 1 MP of LR, 7
# stands in for 9, which takes ~12 s per megapixel.  BENCHMARKS.md, "Session 11".
_JXL_EFFORTS, _JXL_EFFORTS_LARGE, _JXL_LARGE_PIXELS = (5, 9), (5, 7), 1 << 20


def _mode(channels: int) -> str:
    return {1: "L", 3: "RGB"}[channels]


def _encode_one(codec: int, img: np.ndarray) -> bytes:
    if codec == ZSTD:
        h, w = img.shape[:2]
        return struct.pack("<II", h, w) + zstandard.ZstdCompressor(level=19).compress(img.tobytes())
    if codec == JXL_PLANES:
        img = np.ascontiguousarray(img.transpose(2, 0, 1).reshape(-1, img.shape[1]))   # decode's inverse
        codec = JXL
    if codec == JXL:
        import imagecodecs   # imported on use: a large extension module
        large = img.shape[0] * img.shape[1] > _JXL_LARGE_PIXELS
        return min((imagecodecs.jpegxl_encode(img, lossless=True, effort=e)
                    for e in (_JXL_EFFORTS_LARGE if large else _JXL_EFFORTS)), key=len)
    buf = io.BytesIO()
    pil = Image.fromarray(img)
    if codec == PNG:
        pil.save(buf, "PNG", optimize=True)
    else:
        pil.save(buf, "WEBP", lossless=True, quality=50, method=4, exact=True)  # m6 q100: -0.8% bytes, 40x slower
    return buf.getvalue()


def encode(img: np.ndarray, codecs=(PNG, WEBP, ZSTD, JXL, JXL_PLANES)) -> bytes:
    """uint8 (h, w) or (h, w, 3) -> payload (codec byte + data), the smallest candidate."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    best = None
    for codec in codecs:
        if codec == WEBP and max(img.shape[:2]) > _WEBP_MAX_SIDE:
            continue
        if codec == JXL_PLANES and img.ndim != 3:
            continue
        data = bytes([codec]) + _encode_one(codec, img)
        if best is None or len(data) < len(best):
            best = data
    return best


def decode(payload: bytes, shape: tuple, where: str) -> np.ndarray:
    """Payload -> uint8 array of exactly `shape`; anything else is CorruptError."""
    codec, data = payload[0], payload[1:]
    h, w = shape[:2]
    try:
        if codec == ZSTD:
            if len(data) < 8 or struct.unpack("<II", data[:8]) != (h, w):
                raise CorruptError(f"corrupt .rsc file ({where} section: wrong size)")
            raw = zstandard.ZstdDecompressor().decompress(data[8:], max_output_size=h * w * 3 + 1)
            if len(raw) != int(np.prod(shape)):
                raise CorruptError(f"corrupt .rsc file ({where} section: wrong length)")
            return np.frombuffer(raw, np.uint8).reshape(shape)
        if codec == JXL:
            import imagecodecs
            # `out` is checked against the stream's declared size before any
            # pixel memory is allocated: the bomb guard
            return imagecodecs.jpegxl_decode(data, out=np.empty(shape, np.uint8))
        if codec == JXL_PLANES:
            if len(shape) != 3:
                raise CorruptError(f"corrupt .rsc file ({where} section: planes of a single plane)")
            import imagecodecs
            planes = imagecodecs.jpegxl_decode(data, out=np.empty((3 * h, w), np.uint8))
            return np.ascontiguousarray(planes.reshape(3, h, w).transpose(1, 2, 0))
        if codec not in (PNG, WEBP):
            raise CorruptError(f"corrupt .rsc file ({where} section: unknown codec {codec})")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG" if codec == PNG else "WEBP"])
            if im.size != (w, h):          # checked before pixels are decoded
                raise CorruptError(f"corrupt .rsc file ({where} section: {im.size} != {(w, h)})")
            arr = np.asarray(im.convert(_mode(shape[2] if len(shape) == 3 else 1)))
    except CorruptError:
        raise
    except Exception as e:  # Pillow/zstd raise many types on damaged data
        raise CorruptError(f"corrupt .rsc file ({where} section: {type(e).__name__})") from None
    return arr.reshape(shape)


MAX_LR_STEP = 16   # the container keeps step - 1 in 4 bits


def check_lr_step(step: int) -> None:
    if not (isinstance(step, int) and 1 <= step <= MAX_LR_STEP):
        raise ValueError(f"LR step must be an integer from 1 to {MAX_LR_STEP}, got {step!r}")


LR_SPACES = ("rgb", "ycc")
# "ycc": the codes are BT.601 full-range (JFIF) YCbCr on the 0..255 scale,
# each on the step's grid.  At x2 step 8 it stores 27 % fewer bytes than RGB
# codes for 1.7 dB less, a better trade than a coarser RGB step (BENCHMARKS.md,
# "Session 12").  The inverse is the matrix's float inverse, so every decoder
# computes the same LR.
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                    dtype=torch.float64)
_RGB_OF_YCC = torch.linalg.inv(_YCC).float()
_YCC = _YCC.float()
_YCC_OFFSET = torch.tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1)


def check_lr_space(space: str) -> None:
    if space not in LR_SPACES:
        raise ValueError(f"LR space must be one of {', '.join(LR_SPACES)}, got {space!r}")


def _mix(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m, v)


def _ycc(y: torch.Tensor) -> torch.Tensor:
    """y in [0, 1] (clamped) -> YCbCr on the 0..255 scale."""
    return _mix(_YCC, y.clamp(0, 1) * 255) + _YCC_OFFSET


def _codes(y: torch.Tensor, step: int, space: str) -> torch.Tensor:
    """The nearest grid point's k per channel, as floats."""
    if space == "rgb":
        return _grid_index(y, step)
    return torch.round(_ycc(y) / step).clamp(0, round(255 / step))


def _values(k: torch.Tensor, step: int, space: str) -> torch.Tensor:
    """Codes k -> the LR in [0, 1] that the flow inverts."""
    if space == "rgb":
        return k * (step / 255)
    return (_mix(_RGB_OF_YCC, k * step - _YCC_OFFSET).clamp(0, 255)) / 255


def lr_grid(y: torch.Tensor, step: int = 1, space: str = "rgb") -> torch.Tensor:
    """The LR as stored: y in [0, 1] rounded to the grid k * step / 255,
    k = 0 .. floor(255 / step), with a straight-through gradient (training
    and refinement see exactly the encoder's rounding).  Step 1 is the plain
    8-bit LR; a coarser step stores fewer levels (README, "LR step").
    space "ycc": the grid is on YCbCr codes, and the result their RGB."""
    q = _values(_codes(y.detach(), step, space), step, space)
    return y + (q - y).detach()


def lr_codes(y: torch.Tensor, step: int = 1, space: str = "rgb") -> np.ndarray:
    """(1, 3, h, w) floats -> (h, w, 3) uint8 codes k, what the LR section stores."""
    return _codes(y.detach(), step, space)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def _grid_index(y: torch.Tensor, step: int) -> torch.Tensor:
    """The nearest grid point's k for y in [0, 1] (clamped), as floats."""
    return torch.round(y.clamp(0, 1) * (255 / step)).clamp(max=255 // step)


def lr_from_codes(codes: np.ndarray, step: int = 1, space: str = "rgb") -> np.ndarray:
    """Stored codes -> the LR the flow inverts: uint8 for "rgb" (codes above
    the grid cannot come from our encoder; they saturate at 255 rather than
    wrap), float32 on the 0..255 scale for "ycc"."""
    if space == "ycc":
        k = torch.from_numpy(codes.astype(np.float32)).permute(2, 0, 1)[None]
        return (_values(k, step, space) * 255)[0].permute(1, 2, 0).contiguous().numpy()
    if step == 1:
        return codes
    return np.minimum(codes.astype(np.int32) * step, 255).astype(np.uint8)


def rate_proxy(y: torch.Tensor, step: int = 1, space: str = "rgb") -> torch.Tensor:
    """Differentiable stand-in for the lossless LR's bits per sample.

    Residual of the gradient predictor a + b - c (left, top, top-left), on
    (R-G, G, B-G) at the 0..255 scale, as log2(1 + |r|).  On 114 LR images
    (val set, x2/x4/x8, flow and bicubic) it correlates 0.977 with lossless
    JPEG XL bits per sample, bits ~ 1.49 * proxy + 0.88 (BENCHMARKS.md,
    "v3: a rate term").  With an LR step the coder sees the codes, y * 255 / step;
    space "ycc": the YCbCr codes, already decorrelated."""
    if space == "ycc":
        d = _ycc(y) / step
    else:
        v = y * (255 / step)
        g = v[:, 1:2]
        d = torch.cat([v[:, 0:1] - g, g, v[:, 2:3] - g], dim=1)
    r = d[..., 1:, 1:] - (d[..., 1:, :-1] + d[..., :-1, 1:] - d[..., :-1, :-1])
    return torch.log2(1 + torch.sqrt(r * r + 1e-6)).mean()

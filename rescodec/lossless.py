"""Lossless payload codecs of the .rsc file: the LR codes (lr_quant.py makes
them) and the alpha plane.

Every candidate codec is tried and the smallest output kept; its id is the
first payload byte (container.py).  Measured on the val set (CHANGELOG.md, 0.2.0,
"benchmark storage"): lossless JPEG XL is smallest on almost every LR image, 4-9% below
lossless WebP; PNG or WebP win only now and then, by a few bytes.
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import zstandard
from PIL import Image

from . import zstd_frame
from .errors import CorruptError
from .warnings_lock import caught_warnings

PNG, WEBP, ZSTD, JXL, JXL_PLANES = 0, 1, 2, 3, 4
CODEC_NAMES = {PNG: "png", WEBP: "webp-lossless", ZSTD: "zstd-raw", JXL: "jpegxl-lossless",
               JXL_PLANES: "jpegxl-lossless-planes"}
# JXL_PLANES: the three channels stacked vertically as one grey image.  On
# YCbCr codes, already decorrelated, it is 1-2 % smaller than JXL's own colour
# transforms (CHANGELOG.md, 0.1.0); on RGB codes it rarely wins.
# Pillow's writers' own limits (libjpeg's, libwebp's): name, pixels a side.  A
# larger LR skips the WebP candidate; decode's outputs (cli) and compare's
# baselines check them too.
SIDE_LIMITS = {"JPEG": ("JPEG", 65500), "WEBP": ("WebP", 16383)}
# JPEG XL's effort: 9 is 4.4% smaller than 5 on LR codes at step 8 (x2) and
# 2.4% at step 5 (x4), but up to 2% larger on some 8-bit LRs (x16); decoding
# is as fast.  So both are tried and the smaller kept; above 1 MP of LR, 7
# stands in for 9, which takes ~12 s per megapixel (CHANGELOG.md, 0.1.0).
_JXL_EFFORTS, _JXL_EFFORTS_LARGE, _JXL_LARGE_PIXELS = (5, 9), (5, 7), 1 << 20


# JPEG XL's signatures: a bare codestream, or (libjxl's choice for an image
# of over 2^28 pixels, which needs level 10) the container
JXL_CODESTREAM, JXL_CONTAINER = b"\xff\x0a", b"\0\0\0\x0cJXL \r\n\x87\n"


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
        if codec == WEBP and max(img.shape[:2]) > SIDE_LIMITS["WEBP"][1]:
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
            raw = zstd_frame.read(data[8:], f"{where} section", size=int(np.prod(shape)))
            return np.frombuffer(raw, np.uint8).reshape(shape)
        if codec in (JXL, JXL_PLANES) and data[:2] != JXL_CODESTREAM and data[:12] != JXL_CONTAINER:
            raise CorruptError(f"corrupt .rsc file ({where} section: not a JPEG XL codestream)")
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
        if codec == WEBP and data[:4] + data[8:16] != b"RIFFWEBPVP8L":   # lossless, as the writer's, not VP8
            raise CorruptError(f"corrupt .rsc file ({where} section: not a lossless (VP8L) WebP)")
        with caught_warnings():   # Image.open is what warns
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG" if codec == PNG else "WEBP"])
        if im.size != (w, h):          # checked before pixels are decoded
            raise CorruptError(f"corrupt .rsc file ({where} section: {im.size} != {(w, h)})")
        # one file, one encoding: PNG in the mode written, WebP (which keeps
        # grey as RGB) in RGB, grey only where its channels are equal
        mode = _mode(shape[2] if len(shape) == 3 else 1)
        written = mode if codec == PNG else "RGB"
        if im.mode != written:
            raise CorruptError(f"corrupt .rsc file ({where} section: a {CODEC_NAMES[codec]} picture "
                               f"of mode {im.mode}, not {written})")
        arr = np.asarray(im)
        if arr.ndim == 3 and mode == "L":
            if (arr != arr[..., :1]).any():
                raise CorruptError(f"corrupt .rsc file ({where} section: a grey picture of unequal channels)")
            arr = arr[..., 0]
    except CorruptError:
        raise
    except Exception as e:  # Pillow/zstd raise many types on damaged data
        raise CorruptError(f"corrupt .rsc file ({where} section: {type(e).__name__})") from None
    return arr.reshape(shape)

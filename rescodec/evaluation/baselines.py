"""The codecs users weigh rescodec against, all from Pillow: JPEG
(optimize=True), WebP and AVIF, each at a quality; and the plain rescaling
baseline (bicubic down, lossless LR, bicubic up)."""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import lossless
from ..codec import largest_quality_within
from .metrics import bicubic_rescale, psnr

CODECS = ("JPEG", "WEBP", "AVIF")
_SAVE_ARGS = {"JPEG": {"optimize": True}, "WEBP": {"method": 4}, "AVIF": {"speed": 6}}


@dataclass
class Coded:
    codec: str
    setting: str          # "q=37", "x4", ...
    nbytes: int
    decoded: np.ndarray   # uint8, same shape as the input
    encode_s: float
    decode_s: float
    note: str = ""


def encode_at(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, codec, quality=int(quality), **_SAVE_ARGS[codec])
    return buf.getvalue()


def decode_bytes(data: bytes, mode: str = "RGB") -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def matched(rgb: np.ndarray, codec: str, target: int) -> Coded:
    """The codec at the largest quality whose file is no larger than `target`
    bytes; quality 1 with a note when even that is larger."""
    blobs = {}

    def size_of(q):
        blobs[q] = encode_at(rgb, codec, q)
        return len(blobs[q])

    q, _ = largest_quality_within(size_of, target)
    note = ""
    if q is None:
        q, note = 1, "cannot go that small: quality 1 is larger"
    t = time.perf_counter()
    data = encode_at(rgb, codec, q)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    dec = decode_bytes(data)
    return Coded(codec, f"q={q}", len(data), dec, enc, time.perf_counter() - t, note)


def bicubic(rgb: np.ndarray, scale: int) -> Coded:
    """Bicubic down by `scale`, the LR stored losslessly (rescodec's own LR
    storage), bicubic back up: what rescodec must beat to be worth a flow.
    Storage is lossless, so the pixels are those of metrics.bicubic_rescale."""
    t = time.perf_counter()
    lr, up = bicubic_rescale(rgb, scale)
    data = lossless.encode(lr)
    return Coded("bicubic", f"x{scale}", len(data), up, time.perf_counter() - t, 0.0)


def jpeg_at_bpp(rgb: np.ndarray, bpp: float) -> dict:
    """JPEG PSNR at `bpp`, linearly interpolated between the two qualities that
    bracket it (qualities 1..100); clamped at the ends, and says so."""
    h, w = rgb.shape[:2]
    pts = sorted((8 * len(d) / (w * h), psnr(rgb, decode_bytes(d)), q)
                 for q in range(1, 101) for d in [encode_at(rgb, "JPEG", q)])
    rates = np.array([p[0] for p in pts])
    quals = np.array([p[1] for p in pts])
    if bpp <= rates[0]:
        return {"psnr": float(quals[0]), "quality": pts[0][2], "clamped": "below quality 1"}
    if bpp >= rates[-1]:
        return {"psnr": float(quals[-1]), "quality": pts[-1][2], "clamped": "above quality 100"}
    return {"psnr": float(np.interp(bpp, rates, quals)), "quality": None, "clamped": ""}

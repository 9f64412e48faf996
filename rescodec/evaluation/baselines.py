"""The codecs users weigh rescodec against, all from Pillow: JPEG
(optimize=True), WebP and AVIF (4:4:4, speed 4; "AVIF-psnr" also tune=psnr,
the tuning of rescodec's LR), each at a quality;
"Lanczos down s + AVIF + Lanczos up", rescaling with no learning at all; and
the plain lossless-LR rescaling baseline (bicubic down, lossless LR, bicubic up)."""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import lossless
from ..rate_control import largest_quality_within
from ..lossy_lr import too_large
from .metrics import psnr

CODECS = ("JPEG", "WEBP", "AVIF")
EXACT_PSNR = 100.0   # dB an exact decode counts as between two files (settings.MAX_PSNR)
_SAVE_ARGS = {"JPEG": {"optimize": True}, "WEBP": {"method": 4},
              "AVIF": {"speed": 4, "subsampling": "4:4:4"},
              "AVIF-psnr": {"speed": 4, "subsampling": "4:4:4", "advanced": {"tune": "psnr"}}}


def bicubic_rescale(rgb: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain rescaling baseline: bicubic down by `scale`, bicubic back up.

    -> (LR uint8, reconstruction uint8 at the input size)."""
    im = Image.fromarray(np.asarray(rgb, np.uint8))
    w, h = im.size
    lr = im.resize((max(1, w // scale), max(1, h // scale)), Image.BICUBIC)
    return np.asarray(lr), np.asarray(lr.resize((w, h), Image.BICUBIC))


def cannot_code(codec: str, shape: tuple) -> str | None:
    """Why the baseline `codec` cannot code a picture of `shape` (h, w, ...),
    or None where it can: JPEG's and WebP's sides, and what libavif decodes
    (lossy_lr.too_large) of the AVIF, at the Lanczos pipeline's size."""
    h, w = shape[:2]
    scale = int(codec[7:codec.index("+")]) if codec.startswith("lanczos") else 1
    name, most = lossless.SIDE_LIMITS.get(codec, (None, None))
    if most is not None and max(h, w) > most:
        return f"{name} codes at most {most} pixels a side"
    if codec.endswith(("AVIF", "AVIF-psnr")):
        return too_large(h // scale, w // scale)
    return None


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
    """The codec's file of `rgb` at `quality`.  A grey picture (three equal
    channels) is a one-channel JPEG, as a user saving it gets: as colour it
    was 0.7 dB worse at the same size (WebP and AVIF are the same either way)."""
    buf = io.BytesIO()
    grey = codec == "JPEG" and rgb.ndim == 3 and (rgb == rgb[..., :1]).all()
    Image.fromarray(rgb[..., 0] if grey else rgb).save(buf, codec.split("-")[0], quality=int(quality),
                                                        **_SAVE_ARGS[codec])
    return buf.getvalue()


def lanczos_avif(rgb: np.ndarray, scale: int, quality: int, avif: str = "AVIF") -> tuple[int, np.ndarray]:
    """Lanczos down by `scale`, AVIF (as encode_at; avif: "AVIF" or
    "AVIF-psnr"), Lanczos back up -> (bytes, pixels)."""
    h, w = rgb.shape[:2]
    lr = Image.fromarray(rgb).resize((max(1, w // scale), max(1, h // scale)), Image.LANCZOS)
    data = encode_at(np.asarray(lr), avif, quality)
    with Image.open(io.BytesIO(data)) as im:
        return len(data), np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS))


def decode_bytes(data: bytes, mode: str = "RGB") -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def matched(rgb: np.ndarray, codec: str, target: int) -> Coded:
    """The codec (one of CODECS, or "lanczosS+AVIF") at the largest quality
    whose file is no larger than `target` bytes; the lowest quality with a
    note when even that is larger."""
    scale = int(codec[7:-5]) if codec.startswith("lanczos") else 0
    lo = 1 if codec == "JPEG" else 0   # Pillow's JPEG takes 0 for 1; WebP's 0 is smaller
    blobs = {}

    def size_of(q):
        if scale:
            blobs[q] = lanczos_avif(rgb, scale, q)[0]
        else:
            blobs[q] = len(encode_at(rgb, codec, q))
        return blobs[q]

    q, _ = largest_quality_within(size_of, target, lo=lo)
    note = ""
    if q is None:
        q, note = lo, f"cannot go that small: quality {lo} is larger"
    t = time.perf_counter()
    if scale:
        n, dec = lanczos_avif(rgb, scale, q)
        enc, dec_s = time.perf_counter() - t, 0.0
    else:
        data = encode_at(rgb, codec, q)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        n, dec = len(data), decode_bytes(data)
        dec_s = time.perf_counter() - t
    return Coded(codec, f"q={q}", n, dec, enc, dec_s, note)


def psnr_at_size(rgb: np.ndarray, codec: str, m: Coded, target: int) -> float:
    """`codec`'s PSNR at exactly `target` bytes, where `m` is matched()'s file:
    between it (the largest quality no larger) and the next quality's file,
    linear in log-bytes as bench interpolates; nan where no two qualities
    bracket the target (even the lowest is larger, or the highest smaller).
    The matched file alone is smaller, so its PSNR understates the codec."""
    here = psnr(rgb, m.decoded)
    if m.note or m.nbytes == target or not np.isfinite(here):   # exact already at a smaller size
        return float("nan") if m.note else here
    scale = int(codec[7:-5]) if codec.startswith("lanczos") else 0
    for q in range(int(m.setting.removeprefix("q=")) + 1, 101):
        if scale:
            n, dec = lanczos_avif(rgb, scale, q)
        else:
            data = encode_at(rgb, codec, q)
            n, dec = len(data), decode_bytes(data)
        if n > target:
            f = np.log(target / m.nbytes) / np.log(n / m.nbytes)
            return float(here + f * (min(psnr(rgb, dec), EXACT_PSNR) - here))
    return float("nan")


def bicubic(rgb: np.ndarray, scale: int) -> Coded:
    """Bicubic down by `scale`, the LR stored losslessly (rescodec's own LR
    storage), bicubic back up: what rescodec must beat to be worth a flow.
    Storage is lossless, so the pixels are those of bicubic_rescale."""
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

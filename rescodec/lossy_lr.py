"""The LR through a lossy image codec: AVIF (AV1 intra) through Pillow, 4:4:4.

The LR is 90-95 % of a file whose LR is stored losslessly; a transform codec
spends those bits far better (README, "How it works").

A file stores the AV1 item of Pillow's AVIF and the two properties that vary
(`split`), not the AVIF's HEIF boxes: they take 264 bytes, 0.027 bpp on a
280x280 photo, and say nothing the .rsc header does not.  The
decoder builds the same AVIF again (`wrap`) and decodes it with Pillow, and
`rescodec thumb` gives the LR as a viewable picture.

Training round-trips LR patches through the same encoder (`round_trip`) with a
straight-through gradient (SAIN's "real codec in the loop"), so the flow's
inverse learns to reconstruct from what the decoder will really read.
"""
from __future__ import annotations

import io
import struct
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
# at x1 the photo itself is checked (codec._x1_fits); at x2 and up a small
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


def _box(kind: bytes, body: bytes, full: int | None = None) -> bytes:
    """An ISO-BMFF box; full: the version of a full box (flags 0)."""
    if full is not None:
        body = bytes([full, 0, 0, 0]) + body
    return struct.pack(">I", 8 + len(body)) + kind + body


def _children(data: bytes) -> dict:
    """The boxes of a box body -> {type: body}; ValueError where they do not parse."""
    return {kind: data[a:b] for kind, a, b in _boxes(data)}


AV1C_SIZE, NCLX_SIZE = 4, 7   # the av1C record (no config OBUs) and colr's nclx fields
PROFILE_BRAND = b"MA1A"   # ftyp's last brand: AVIF's Advanced Profile, for seq_profile 1 (4:4:4)


class _Bits:
    """AV1's f(n) reader (AV1 spec 4.10.2), most significant bit first."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def f(self, n: int) -> int:
        if self.pos + n > 8 * len(self.data):
            raise ValueError("past the end")
        v = 0
        for _ in range(n):
            v = v << 1 | (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return v


def _obus(item: bytes) -> list:
    """An AV1 item's OBUs -> [(obu_type, payload)], payloads as views (a
    full-size photo's frame is megabytes); ValueError where they do not end
    with the item."""
    view, out, i = memoryview(item), [], 0
    while i < len(item):   # OBUs: header byte, optional extension byte, leb128 size
        head = item[i]
        obu_type, ext, has_size = head >> 3 & 15, head >> 2 & 1, head >> 1 & 1
        i += 1 + ext
        size, shift = 0, 0
        while has_size:
            if i >= len(item) or shift > 56:
                raise ValueError("bad OBU size")
            size |= (item[i] & 127) << shift
            shift += 7
            i += 1
            if not item[i - 1] & 128:
                break
        if not has_size:
            size = len(item) - i
        if i + size > len(item):
            raise ValueError("an OBU past the item's end")
        out.append((obu_type, view[i:i + size]))
        i += size
    return out


OBU_SEQUENCE_HEADER, OBU_FRAME_HEADER, OBU_FRAME = 1, 3, 6


def frame_size(item: bytes) -> tuple:
    """An AV1 item's frame size (w, h): its sequence headers' max_frame_width
    and height (AV1 spec 5.5.1).  Each must be a still picture's reduced
    header, as libaom writes for a still image: there every frame has that
    size (frame_size_override_flag is 0, 5.9.2); a full header would let a
    frame set its own, which libavif then scales.  ValueError where there is
    none, where one is full, where two differ (a small one before a large
    frame), or where the OBUs do not end with the item."""
    return _sequence(_obus(item))[0]


def _sequence(obus: list) -> tuple:
    """frame_size() of an item's OBUs, and the sequence header's seq_level_idx[0]."""
    found = {_sequence_header(_Bits(payload)) for kind, payload in obus if kind == OBU_SEQUENCE_HEADER}
    if len({size for size, _ in found}) != 1:
        raise ValueError("no sequence header" if not found else "sequence headers of different sizes")
    if len(found) != 1:
        raise ValueError("sequence headers of different levels")
    return found.pop()


def _sequence_header(b: _Bits) -> tuple:
    """A sequence header OBU's payload -> ((max frame width, height), seq_level_idx[0])."""
    profile = b.f(3)                     # seq_profile
    b.f(1)                               # still_picture
    if not b.f(1):                       # reduced_still_picture_header
        raise ValueError("a full sequence header, whose frames may set their own size")
    level = b.f(5)                       # seq_level_idx[0]
    wbits, hbits = b.f(4) + 1, b.f(4) + 1
    size = b.f(wbits) + 1, b.f(hbits) + 1
    b.f(3), b.f(3)                       # 128x128 superblocks, filter intra, intra edge; superres, CDEF, restoration
    if profile != 1 or b.f(1):           # color_config's high_bitdepth: profile 1 is 4:4:4, never grey
        raise ValueError("a sequence header of another format than 8-bit 4:4:4")
    return size, level


def _check_frame(item: bytes, shape: tuple, av1c: bytes | None = None) -> None:
    """CorruptError unless the AV1 item is one frame of (h, w): libavif would
    scale another to the size the AVIF's ispe claims (a small ispe over a
    frame of 16384x16384 is a bomb), and it shows the first of several
    frames where another decoder may show the last.  `av1c`: the item's
    AV1CodecConfigurationRecord, which must say what its sequence header
    says (seq_profile 1, its level, 8-bit 4:4:4)."""
    h, w = shape[:2]
    try:
        obus = _obus(item)
        size, level = _sequence(obus)
        frames = sum(kind in (OBU_FRAME, OBU_FRAME_HEADER) for kind, _ in obus)
    except ValueError as e:
        raise CorruptError(f"corrupt .rsc file (LR section: an AV1 item with {e})") from None
    if size != (w, h):
        raise CorruptError(f"corrupt .rsc file (LR section: an AV1 frame of {size[0]}x{size[1]} "
                           f"for a small picture of {w}x{h})")
    if frames != 1:
        raise CorruptError(f"corrupt .rsc file (LR section: an AV1 item of {frames} frames, not 1)")
    # av1C: marker and version 0x81; seq_profile 1 and the level; tier 0,
    # 8 bits, 4:4:4, no initial presentation delay (ISO/IEC 23000-22 / AV1-ISOBMFF 2.3.3)
    if av1c is not None and (av1c[0] != 0x81 or av1c[1] != (1 << 5 | level) or av1c[2] or av1c[3]):
        raise CorruptError(f"corrupt .rsc file (LR section: an av1C record {av1c.hex()} that its "
                           f"sequence header (profile 1, level {level}, 8-bit 4:4:4) contradicts)")


def _boxes(data: bytes, start: int = 0) -> list:
    """The boxes of a box body -> [(type, body start, body end)], offsets in
    `data`; ValueError where they do not parse."""
    out, i = [], start
    while i < len(data):
        if len(data) - i < 8:
            raise ValueError("short box")
        n = int.from_bytes(data[i:i + 4], "big")
        if n < 8 or i + n > len(data):
            raise ValueError("bad box size")
        out.append((data[i + 4:i + 8], i + 8, i + n))
        i += n
    return out


def _iloc_extent(iloc: bytes) -> tuple:
    """An iloc box's body (ISO/IEC 14496-12, 8.11.3) -> (offset, length) of
    its one item's one extent in the file; ValueError for anything else (more
    items or extents, an extent in idat or in another file)."""
    r = _Bits(iloc)
    version = r.f(8)
    r.f(24)
    if version > 2:
        raise ValueError("iloc version")
    offset_size, length_size, base_size, index_size = r.f(4), r.f(4), r.f(4), r.f(4)
    if any(n not in (0, 4, 8) for n in (offset_size, length_size, base_size)):
        raise ValueError("iloc field size")
    if r.f(16 if version < 2 else 32) != 1:
        raise ValueError("not one item")
    r.f(16 if version < 2 else 32)                       # item_ID
    if version in (1, 2) and r.f(16) & 15:               # construction_method: 0, file offsets
        raise ValueError("not in the file")
    if r.f(16):                                           # data_reference_index: 0, this file
        raise ValueError("in another file")
    base = r.f(8 * base_size)
    if r.f(16) != 1:
        raise ValueError("not one extent")
    if version in (1, 2) and index_size:
        r.f(8 * index_size)
    return base + r.f(8 * offset_size), r.f(8 * length_size)


def check_whole(avif: bytes, shape: tuple, version: int) -> None:
    """A whole AVIF file (codec id 5) -> CorruptError unless it is a still
    image (ftyp of major brand avif, then meta and mdat alone), its one item
    lies in its mdat and is one AV1 frame of (h, w), as `wrap` checks a bare
    payload's (libavif decodes what iloc points to, wherever that is, and a
    track before any item), and, from format `version` 6, `wrap` does not
    rebuild it (then the file holds codec id 6 or 7)."""
    try:
        top = _boxes(avif)
        if sorted(kind for kind, _, _ in top if kind not in (b"free", b"skip")) != [b"ftyp", b"mdat", b"meta"]:
            raise ValueError("boxes other than one ftyp, meta and mdat")   # a track (moov) is decoded first
        if avif[top[0][1]:top[0][1] + 4] != b"avif" or top[0][0] != b"ftyp":
            raise ValueError("not a still image's ftyp")   # another major brand (avis): its track
        mdats = [(a, b) for kind, a, b in top if kind == b"mdat"]
        metas = [(a, b) for kind, a, b in top if kind == b"meta"]
        ilocs = [(a, b) for kind, a, b in _boxes(avif[:metas[0][1]], metas[0][0] + 4) if kind == b"iloc"]
        if len(ilocs) != 1:
            raise ValueError("not one iloc")
        offset, length = _iloc_extent(avif[ilocs[0][0]:ilocs[0][1]])
        if not (mdats[0][0] <= offset and offset + length <= mdats[0][1]):
            raise ValueError("the item outside the mdat")
    except ValueError as e:
        raise CorruptError(f"corrupt .rsc file (LR section: an AVIF whose item cannot be found: {e})") from None
    _check_frame(avif[offset:offset + length], shape)
    if version >= 6 and split(avif, shape) is not None:   # one file, one encoding (version 5 had no id 6)
        raise CorruptError("corrupt .rsc file (LR section: a whole AVIF (codec id 5) that "
                           "codec id 6 holds)")


def wrap(bare: bytes, shape: tuple, icc: bytes | None = None) -> bytes:
    """A bare payload (`split`) and the LR's (h, w) -> the AVIF file it came from:
    one item, properties ispe, pixi (3 x 8 bits), av1C, colr prof (the ICC
    profile `icc`, where given) and colr nclx, in the layout libavif writes.
    CorruptError where the payload is too short, or where its AV1 frame is
    not (h, w): libavif would scale it to ispe's size."""
    h, w = shape[:2]
    if len(bare) <= AV1C_SIZE + NCLX_SIZE:
        raise CorruptError("corrupt .rsc file (LR section: short AV1 payload)")
    av1c, nclx, item = bare[:AV1C_SIZE], bare[AV1C_SIZE:AV1C_SIZE + NCLX_SIZE], bare[AV1C_SIZE + NCLX_SIZE:]
    _check_frame(item, shape, av1c)
    ftyp = _box(b"ftyp", b"avif" + bytes(4) + b"avifmif1miaf" + PROFILE_BRAND)   # _check_frame: profile 1
    prof = _box(b"colr", b"prof" + icc) if icc else b""
    ipco = _box(b"ipco", _box(b"ispe", struct.pack(">II", w, h), 0)
                + _box(b"pixi", bytes([3, 8, 8, 8]), 0) + _box(b"av1C", av1c)
                + prof + _box(b"colr", b"nclx" + nclx))
    links = [0x01, 0x02, 0x83, 0x04] + ([0x05] if prof else [])   # property indices; 0x80: essential
    ipma = _box(b"ipma", struct.pack(">IHB", 1, 1, len(links)) + bytes(links), 0)

    def meta(offset: int) -> bytes:
        return _box(b"meta", b"".join([
            _box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0),
            _box(b"pitm", struct.pack(">H", 1), 0),
            _box(b"iloc", bytes([0x44, 0]) + struct.pack(">HHHHII", 1, 1, 0, 1, offset, len(item)), 0),
            _box(b"iinf", struct.pack(">H", 1) + _box(b"infe", struct.pack(">HH", 1, 0) + b"av01Color\0", 2), 0),
            _box(b"iprp", ipco + ipma)]), 0)

    head = ftyp + meta(0)   # the item's offset is fixed-width, so the length does not depend on it
    return ftyp + meta(len(head) + 8) + _box(b"mdat", item)


def split(avif: bytes, shape: tuple) -> bytes | None:
    """Pillow's AVIF of an (h, w) LR -> its bare payload: av1C (4 bytes), colr's
    nclx fields (7) and the AV1 item's bytes; None unless `wrap` rebuilds
    exactly these bytes (another libavif's layout: store the whole file)."""
    try:
        top = _children(avif)
        props = _children(_children(_children(top[b"meta"][4:])[b"iprp"])[b"ipco"])
        av1c, colr = props[b"av1C"], props[b"colr"]
        if len(av1c) != AV1C_SIZE or colr[:4] != b"nclx" or len(colr) != 4 + NCLX_SIZE:
            return None
        bare = av1c + colr[4:] + top[b"mdat"]
    except (KeyError, ValueError):
        return None
    try:
        return bare if wrap(bare, shape) == avif else None
    except CorruptError:   # not an AV1 frame of this shape
        return None


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

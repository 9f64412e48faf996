"""The .rsc container: the one place its format is defined.

.rsc format, version 5.  All integers are unsigned little-endian; f32 is an
IEEE-754 single, little-endian.

Header
    offset  size  type   field             allowed values
    0       4     bytes  magic             b"RSC\\x1a"
    4       1     u8     version           5 for a file with an AVIF LR (flags
                                           bit 6), else 4: the writer uses the
                                           oldest version that holds the file.
                                           1-3 are read too: the same layout;
                                           1 without codec id 3, 1-3 without
                                           codec id 4, 1-2 with flags bits 1-4
                                           zero, 1-3 with bit 5 zero, 1-4 with
                                           bit 6 zero)
    5       1     u8     flags             bit 0: alpha section present;
                                           bits 1-4: LR step - 1 (version 3 on);
                                           bit 5: LR codes are YCbCr (version 4);
                                           bit 6: the LR is AVIF, lossy (version
                                           5; then bits 1-5 are zero);
                                           bit 7 zero
    6       4     u32    width             1 .. MAX_SIDE   (original image)
    10      4     u32    height            1 .. MAX_SIDE
    14      1     u8     channels          1, 2, 3, 4      (must match mode)
    15      1     u8     mode              0 L, 1 RGB, 2 RGBA, 3 LA
    16      1     u8     scale             2, 4, 8, 16
    17      1     u8     mask bits         1, 2, 3
    18      1     u8     mask norm         1 (L1) or 2 (L2)
    19      4     f32    mask threshold    0 < T < 65536 (0..255 Sobel scale)
    23      4     f32    mask sigma        0 <= sigma < 64
    27      4     u32    Z seed            any
    31      4     f32    Z temperature     0 <= t <= 4 (settings.MAX_TEMPERATURE)
    35      8     bytes  weights hash      first 8 bytes of the weights file's SHA-256
    43      1     u8     model name length n, 1 .. MAX_NAME
    44      n     ascii  model name        [a-z0-9._-], e.g. "bdflow-x16-v1"
    44+n    4     u32    header CRC32      CRC32 of bytes 0 .. 44+n-1

Sections follow the header, in this order, each exactly once:
    1 LR      the LR image Y, (ceil(H/s), ceil(W/s)) x 3.  Flags bit 6: an
              AVIF file (codec id 5) of the 8-bit RGB Y, 4:4:4, any quality,
              and Y is what it decodes to.  Otherwise stored losslessly as
              8-bit codes k on the LR step q's grid: Y = min(k * q, 255)
              (q = 1: k is the 8-bit Y); flags bit 5: k are BT.601
              full-range YCbCr codes, Y = the float inverse of the JFIF
              matrix applied to k * q - (0, 128, 128), clamped to 0..255
              (lr_quant.lr_from_codes)
    2 mask    the LR boundary mask levels, 0 .. 2^bits - 1
    3 alpha   only if flags bit 0: the alpha plane at full size, lossless
Each section:
    0       1     u8     kind              1, 2, 3
    1       4     u32    payload length n  0 .. bytes left in the file
    5       n     bytes  payload           first byte: codec id (see below)
    5+n     4     u32    CRC32             CRC32 of bytes 0 .. 5+n-1 of the section
Nothing may follow the last section.

Codec ids (first payload byte)
    LR, alpha:  0 PNG, 1 WebP lossless, 2 zstd of the raw bytes,
                3 JPEG XL lossless, bare codestream (version 2 on),
                4 (LR only) JPEG XL lossless of the three channels stacked
                  vertically as one grey (3h, w) image (version 4 on)   (lossless.py)
                5 (LR only, exactly when flags bit 6) AVIF (version 5)  (lossy_lr.py)
    mask:       0 bit-planes + zstd, 1 row-context range coder    (mask_coding.py)

bpp reported by rescodec always counts the whole file, header included.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptError, LimitError, NotRscError, TruncatedError, UnsupportedVersionError
from .lossless import JXL, JXL_PLANES   # codec ids newer than versions 1 and 3
from .settings import MAX_LR_STEP, NAME_RE, EncodeSettings

MAGIC = b"RSC\x1a"          # \x1a stops `type` on Windows, like PNG's
VERSION = 5                 # the newest we write (4 where a file needs nothing newer)
READS = (1, 2, 3, 4, 5)     # what we read
MAX_SIDE = 1 << 16          # 65536: padded sides stay far from int32 overflow in torch
MAX_PIXELS = 1 << 27        # 134 MP default bomb guard; callers may raise it
MAX_NAME = 64               # model names are short identifiers (settings.NAME_RE)

MODES = {0: "L", 1: "RGB", 2: "RGBA", 3: "LA"}
MODE_IDS = {v: k for k, v in MODES.items()}
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}
SECTION_LR, SECTION_MASK, SECTION_ALPHA = 1, 2, 3
SECTION_NAMES = {SECTION_LR: "LR", SECTION_MASK: "mask", SECTION_ALPHA: "alpha"}
FLAG_ALPHA = 1
STEP_SHIFT, STEP_MASK = 1, MAX_LR_STEP - 1   # flags bits 1-4: LR step - 1 (version 3)
FLAG_YCC = 1 << 5                            # LR codes in YCbCr (version 4)
FLAG_AVIF = 1 << 6                           # the LR is AVIF (version 5)
AVIF = 5                                     # its payload's codec id (lossy_lr.py)

_FIXED = struct.Struct("<4sBBIIBBBBBffIf8sB")   # bytes 0..43
_SECTION_HEAD = struct.Struct("<BI")


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    mode: str
    scale: int
    mask_bits: int
    mask_norm: int
    mask_threshold: float
    mask_sigma: float
    z_seed: int
    z_temperature: float
    weights_hash: bytes
    model: str
    lr_step: int = 1            # the LR quantiser's step q (README, "LR step")
    lr_space: str = "rgb"       # the LR codes' colour space, rgb or ycc (README, "LR colour space")
    lr_codec: str = "lossless"  # or "avif": the LR through a lossy codec (README, "Quality")
    version: int = field(default=VERSION, compare=False)   # set by unpack; pack picks its own

    @property
    def channels(self) -> int:
        return CHANNELS[self.mode]

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA")

    @property
    def lr_size(self) -> tuple[int, int]:
        """(height, width) of the LR image: the padded size over the scale."""
        return -(-self.height // self.scale), -(-self.width // self.scale)


@dataclass
class RscFile:
    header: Header
    sections: dict = field(default_factory=dict)   # kind -> payload bytes
    sizes: dict = field(default_factory=dict)      # name -> bytes on disk, framing included


def _check_header(h: Header, max_pixels: int) -> None:
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise LimitError(f"image size {h.width}x{h.height} is beyond the limit of {MAX_SIDE} per side")
    if h.width * h.height > max_pixels:
        raise LimitError(f"image of {h.width}x{h.height} = {h.width * h.height} pixels is over "
                         f"the limit of {max_pixels} (raise it with --max-pixels)")
    if h.mode not in MODE_IDS:
        raise CorruptError(f"invalid .rsc header: mode {h.mode!r}")
    if len(h.weights_hash) != 8 or not NAME_RE.match(h.model):
        raise CorruptError("invalid .rsc header: model name or weights hash")
    try:     # the encoder's own checks: a field it could not have written is corrupt
        EncodeSettings.of_header(h).validate()
    except ValueError as e:
        raise CorruptError(f"invalid .rsc header: {e}") from None


def pack(header: Header, lr: bytes, mask: bytes, alpha: bytes | None = None) -> bytes:
    """Header and section payloads (codec byte first) -> .rsc bytes."""
    _check_header(header, max_pixels=1 << 62)
    if (alpha is not None) != header.has_alpha:
        raise ValueError("alpha section must be given exactly when the mode has alpha")
    if (lr[:1] == bytes([AVIF])) != (header.lr_codec == "avif"):
        raise ValueError("the LR payload's codec must be AVIF exactly when the header says so")
    name = header.model.encode("ascii")
    flags = ((FLAG_ALPHA if header.has_alpha else 0) | (header.lr_step - 1) << STEP_SHIFT
             | (FLAG_YCC if header.lr_space == "ycc" else 0)
             | (FLAG_AVIF if header.lr_codec == "avif" else 0))
    version = 5 if header.lr_codec == "avif" else 4
    head = _FIXED.pack(MAGIC, version, flags,
                       header.width, header.height, header.channels, MODE_IDS[header.mode],
                       header.scale, header.mask_bits, header.mask_norm, header.mask_threshold,
                       header.mask_sigma, header.z_seed, header.z_temperature,
                       header.weights_hash, len(name)) + name
    out = [head, struct.pack("<I", zlib.crc32(head))]
    parts = [(SECTION_LR, lr), (SECTION_MASK, mask)] + ([(SECTION_ALPHA, alpha)] if alpha is not None else [])
    for kind, payload in parts:
        body = _SECTION_HEAD.pack(kind, len(payload)) + payload
        out += [body, struct.pack("<I", zlib.crc32(body))]
    return b"".join(out)


class _Reader:
    """Size-checked reads: a short file is a TruncatedError naming the place."""

    def __init__(self, data: bytes):
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int, where: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise TruncatedError(f"truncated .rsc file ({where})")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def unpack(data: bytes, max_pixels: int = MAX_PIXELS) -> RscFile:
    """.rsc bytes -> RscFile, validating every field.  Raises only RscError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("unpack() takes bytes")
    r = _Reader(data)
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        if len(data) < 4 and MAGIC.startswith(bytes(data)):
            raise TruncatedError("truncated .rsc file (magic)")
        raise NotRscError("not an .rsc file (bad magic)")
    if len(data) >= 5 and data[4] not in READS:
        raise UnsupportedVersionError(f"unsupported .rsc version {data[4]} (this rescodec reads "
                                      f"{' and '.join(map(str, READS))})")
    fixed = r.take(_FIXED.size, "header")
    (_, _, flags, width, height, channels, mode_id, scale, bits, norm, thr, sigma, seed, temp,
     whash, nlen) = _FIXED.unpack(fixed)
    name_raw = r.take(nlen, "model name")
    head_crc = struct.unpack("<I", r.take(4, "header CRC"))[0]
    if zlib.crc32(fixed + name_raw) != head_crc:
        raise CorruptError("corrupt .rsc file (header CRC mismatch)")
    known = (FLAG_ALPHA | (STEP_MASK << STEP_SHIFT if data[4] >= 3 else 0)
             | (FLAG_YCC if data[4] >= 4 else 0) | (FLAG_AVIF if data[4] >= 5 else 0))
    if flags & ~known or mode_id not in MODES:
        raise CorruptError(f"invalid .rsc header: flags {flags:#x}, mode {mode_id}")
    if flags & FLAG_AVIF and flags & (FLAG_YCC | STEP_MASK << STEP_SHIFT):
        raise CorruptError(f"invalid .rsc header: flags {flags:#x} (an AVIF LR has no step or space)")
    try:
        name = name_raw.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptError("invalid .rsc header: model name is not ASCII") from None
    header = Header(width, height, MODES[mode_id], scale, bits, norm, thr, sigma, seed, temp,
                    whash, name, lr_step=(flags >> STEP_SHIFT & STEP_MASK) + 1,
                    lr_space="ycc" if flags & FLAG_YCC else "rgb",
                    lr_codec="avif" if flags & FLAG_AVIF else "lossless", version=data[4])
    _check_header(header, max_pixels)
    if channels != header.channels or bool(flags & FLAG_ALPHA) != header.has_alpha:
        raise CorruptError("invalid .rsc header: channels or alpha flag disagree with the mode")
    sizes = {"header": r.pos}
    expected = [SECTION_LR, SECTION_MASK] + ([SECTION_ALPHA] if header.has_alpha else [])
    sections = {}
    for kind in expected:
        where = SECTION_NAMES[kind]
        start = r.pos
        head = r.take(_SECTION_HEAD.size, f"{where} section header")
        got, length = _SECTION_HEAD.unpack(head)
        if got != kind:
            raise CorruptError(f"corrupt .rsc file (expected the {where} section, found kind {got})")
        payload = r.take(length, f"{where} section")
        crc = struct.unpack("<I", r.take(4, f"{where} section CRC"))[0]
        if zlib.crc32(head + payload) != crc:
            raise CorruptError(f"corrupt .rsc file ({where} section CRC mismatch)")
        if not payload:
            raise CorruptError(f"corrupt .rsc file (empty {where} section)")
        if header.version == 1 and kind != SECTION_MASK and payload[0] == JXL:
            raise CorruptError(f"corrupt .rsc file ({where} section: codec id 3 in a version 1 file)")
        if header.version < 4 and kind != SECTION_MASK and payload[0] == JXL_PLANES:
            raise CorruptError(f"corrupt .rsc file ({where} section: codec id 4 before version 4)")
        if kind != SECTION_MASK and (payload[0] == AVIF) != (kind == SECTION_LR and header.lr_codec == "avif"):
            raise CorruptError(f"corrupt .rsc file ({where} section: codec id {payload[0]} "
                               f"with flags {flags:#x})")
        sections[kind] = payload
        sizes[where] = r.pos - start
    if r.left:
        raise CorruptError(f"corrupt .rsc file ({r.left} bytes after the last section)")
    return RscFile(header, sections, sizes)


def looks_like_rsc(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC

"""The .rsc container: the one place its format is defined.

.rsc format, versions 1-9 (rescodec writes 7-9).  All integers are unsigned little-endian; f32 is an
IEEE-754 single, little-endian; uvar is LEB128 (7 bits a byte, low bits
first, bit 7 set on every byte but the last), in its shortest form.

Versions 7-9 (what rescodec writes: 8 or 9 for an x1 file, 7 for any other)
    offset  size  type   field             allowed values
    0       4     bytes  magic             b"RSC\\x1a"
    4       1     u8     version           7; for scale 1, 8, or 9 where the
                                           mask section holds a gain map
    5       1     u8     flags             as in versions 1-6, below; versions
                                           8 and 9 only: bit 1 set (scale 1) and
                                           bit 6 set (an x1 file's picture is AV1)
    6       1     u8     fields            bits 0-1: mode (0 L, 1 RGB, 2 RGBA,
                                           3 LA); bits 2-3: log2(scale) - 1
                                           (zero in versions 8-9: scale 1);
                                           bit 4: mask fields stored;
                                           bit 5: Z seed stored; bit 6: Z
                                           temperature stored (versions 8-9
                                           have no mask and no Z: rescodec
                                           writes bits 4-6 zero; readers
                                           check those fields' ranges and
                                           use none of them, which
                                           rescodec 0.15-0.27 wrote for
                                           -s 1 with mask options);
                                           bit 7: model name stored
    7       1-3   uvar   width             1 .. MAX_SIDE   (original image)
            1-3   uvar   height            1 .. MAX_SIDE
    then, each only where its fields bit is set (the value it stands for when not):
            1     u8     mask bits | (mask norm - 1) << 2, bits 3-7 zero    [1, norm 2]
            4     f32    mask threshold                                     [65535]
            4     f32    mask sigma                                         [1]
            4     u32    Z seed                                             [0]
            4     f32    Z temperature                                      [0]
    then
            8     bytes  weights hash      first 8 bytes of the weights file's SHA-256
            1+n          (bit 7) name length n, 1 .. 64 (settings.MAX_NAME), and the ascii
                         name; without it the model is the registered one whose
                         weights hash this is.  rescodec leaves it out for a
                         model it has registered; readers take either (one
                         install may register what another does not)
    A bit set for a value equal to its default is invalid (one file, one
    encoding).  Sections follow, in the order below, each as
            1-5   uvar   payload length n  1 .. bytes left
            n     bytes  payload           first byte: codec id
    and after the last one
            4     u32    CRC32             of every byte before it
    Nothing may follow.  Defaults and framing are stored only where needed.

Versions 1-6 (read; pack(legacy=True) writes 4-6, for rescodec 0.5)
    offset  size  type   field             allowed values
    0       4     bytes  magic             b"RSC\\x1a"
    4       1     u8     version           6 for a file whose LR is codec id 6
                                           or whose mask is codec id 2, else 5
                                           for one with an AVIF LR (flags bit
                                           6) or metadata (bit 7), else 4:
                                           the legacy writer uses the oldest
                                           version that holds the file.
                                           1-3 are read too: the same layout;
                                           1 without codec id 3, 1-3 without
                                           codec id 4, 1-2 with flags bits 1-4
                                           zero, 1-3 with bit 5 zero, 1-4 with
                                           bits 6 and 7 zero)
    5       1     u8     flags             bit 0: alpha section present;
                                           bits 1-4: LR step - 1 (version 3 on);
                                           bit 5: LR codes are YCbCr (version 4);
                                           bit 6: the LR is AV1, lossy: codec
                                           id 5 or 6 (version 5; then bits 1-5
                                           are zero);
                                           bit 7: metadata section present
                                           (version 5)
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
    43      1     u8     model name length n, 1 .. 64 (settings.MAX_NAME)
    44      n     ascii  model name        [a-z0-9._-], e.g. "rescodec-x2-avif-v1"
    44+n    4     u32    header CRC32      CRC32 of bytes 0 .. 44+n-1
    Each section:
    0       1     u8     kind              1, 2, 3, 4
    1       4     u32    payload length n  1 .. bytes left in the file
    5       n     bytes  payload           first byte: codec id (see below)
    5+n     4     u32    CRC32             CRC32 of bytes 0 .. 5+n-1 of the section
    Nothing may follow the last section.

Sections, in this order, LR and mask always, the others exactly when their
flag is set (every version):
    1 LR      the LR image Y, (ceil(H/s), ceil(W/s)) x 3 (at scale 1 the
              picture itself, which the model's restoration head restores;
              no flow).  Flags bit 6: an
              AVIF file (codec id 5) of the 8-bit RGB Y, 4:4:4, any quality,
              its top-level boxes an ftyp of major brand avif first,
              then one meta and one mdat (free and skip boxes aside), its iloc one item of one
              extent within the mdat, that AV1 item one frame, every
              sequence header of the item a reduced still-picture one of
              Y's size, seq_profile 1 (4:4:4) and 8 bits, and Y is what it
              decodes to; or (codec id 6) that file's AV1 item without its
              HEIF boxes, below.  Otherwise stored
              losslessly as 8-bit codes k on the LR step q's grid:
              Y = min(k * q, 255) (q = 1: k is the 8-bit Y); flags bit 5: k are BT.601
              full-range YCbCr codes, Y = the float inverse of the JFIF
              matrix applied to k * q - (0, 128, 128), clamped to 0..255
              (lr_quant.lr_from_codes)
    2 mask    the LR boundary mask levels, 0 .. 2^bits - 1.  At scale 1
              there is no mask: in version 8 the section is codec id 2
              (empty), and in version 9 it holds the head's gain map
              (head_gain.py), coded with codec id 0 or 1 as a mask of 3
              bits on a grid of ceil(H/64) x ceil(W/64) blocks of 64x64
              pixels, row by row.  Block level L keeps k / 4 of the head's
              correction, k = (4, 0, 1, 2, 3, 5, 6, 7)[L]: each of its
              pixels is clamp((4 d + k (h - d) + 2) >> 2, 0, 255), d the
              AVIF decode and h the head's output (uint8), >> rounding
              down.  The map's 3 bits do not depend on the header's mask
              fields, and its model must have a head.  A map of all level
              0 (the head as it is) is version 8, never 9.
    3 alpha   only if flags bit 0: the alpha plane at full size, lossless
    4 metadata  only if flags bit 7: the source's EXIF, ICC profile and
              XMP (payload below)
Every field's range is that of versions 1-6 (mask bits 1-3, T and sigma,
temperature 0-4, names [a-z0-9._-]); channels follow from the mode.

Codec ids (first payload byte)
    LR, alpha:  0 PNG (8-bit RGB, or L for one channel), 1 WebP lossless
                  (the simple format: RIFF, WEBP, one VP8L chunk; RGB
                  without alpha; one channel as three equal ones),
                2 u32 height, u32 width, then one
                  zstd frame of the raw bytes (row by row, channels
                  interleaved),
                3 JPEG XL lossless, a bare codestream (ff 0a), or the
                  container where libjxl writes one (over 2^28 pixels)
                  (version 2 on),
                4 (LR only) JPEG XL lossless of the three channels stacked
                  vertically as one grey (3h, w) image (version 4 on)   (lossless.py)
                  (readers check the signature; that the stream is
                  lossless is the writer's to keep)
                5 (LR only, flags bit 6) AVIF (version 5)  (av1_item.py)
                6 (LR only, flags bit 6) bare AV1 (version 6; from version
                  7 only where codec id 7 cannot hold it)  (av1_item.py)
                7 (LR only, flags bit 6) short bare AV1 (version 7)
                An LR has codec id 5, 6 or 7 exactly when flags bit 6 is set.
    mask:       0 bit-planes + zstd, 1 row-context range coder,
                2 every level 0, nothing follows (version 6)    (mask_coding.py)
                Of an (h, w) grid of `bits`-bit levels, row by row:
                0: one zstd frame of bit-plane 0 (bit 0 of every level),
                   then plane 1, ..., each level one bit, packed
                   little-endian (bit 0 of a byte first), the last byte
                   padded with zeros: ceil(h w bits / 8) bytes.
                1: a table of 27 x 2^bits u16 counts, all >= 1, then the
                   range coder's u32 words (constriction's queue
                   RangeEncoder, Categorical(perfect=False), float32
                   probabilities count / row sum), exactly its output for
                   these levels: no word left out, none after.  A level's context is c
                   = 9 a + 3 b + e, a, b, e its up-left, up and up-right
                   neighbours (0 off the grid and above the first row),
                   each min(level, 2).
    metadata:   0 zstd of the entries below (version 5)
    Every zstd payload (LR and alpha codec 2, mask coder 0, metadata) is
    exactly one frame whose header records its content size, the size the
    section needs, and nothing follows it.

Bare AV1 payload (LR, codec id 6), after the codec id byte:
    0       4     bytes  av1C              the AV1CodecConfigurationRecord, no
                                           config OBUs
    4       7     bytes  nclx              colr's nclx fields: colour primaries,
                                           transfer, matrix (u16 big-endian
                                           each), full-range flag in bit 7
    11      n     bytes  AV1 item          the image item's OBUs, n >= 1, ending
                                           with it, one frame (one frame OBU,
                                           or one frame header and its tile
                                           groups); each sequence header is a
                                           reduced still-picture header of
                                           seq_profile 1, 8 bits, whose max
                                           frame size is the LR's, ceil(W/s)
                                           x ceil(H/s), and whose level is
                                           av1C's seq_level_idx_0; av1C says
                                           tier 0, 8 bits, 4:4:4 and no
                                           initial presentation delay
    Y is what this AVIF file decodes to (av1_item.wrap): ftyp (major brand
    avif, minor 0; avif, mif1, miaf, MA1A), meta (version 0: hdlr pict; pitm item 1; iloc version 0, offset and
    length 4 bytes, one extent of item 1 at the mdat payload's file offset;
    iinf with one infe version 2, item 1, type av01, name "Color"; iprp: ipco
    with ispe (the LR's width, height), pixi (3 channels of 8 bits), av1C,
    colr nclx, and ipma version 0 associating item 1 with them as 1, 2, 3
    (essential) and 4), mdat (the AV1 item).  That is the file libavif
    writes, byte for byte; from version 6, codec id 5 holds a file only where
    it is not.

Short bare AV1 payload (LR, codec id 7), after the codec id byte: av1C's
byte 1 (seq_profile, seq_level_idx_0), then the AV1 item.  It stands for the
codec id 6 payload whose av1C is 0x81, that byte, 0, 0 and whose nclx is
primaries 1, transfer 13, matrix 6, full range (00 01 00 0d 00 06 80): what
libavif writes for Pillow's 8-bit 4:4:4 RGB, so 10 bytes less (long_av1).

Metadata payload (section 4): codec id 0, then exactly one zstd frame whose
header records its content size, 1 .. MAX_METADATA bytes.  Its content is
one or more entries, back to back, tags strictly increasing (so each at
most once):
    0       1     u8     tag               1 EXIF, 2 ICC profile, 3 XMP
    1       4     u32    length n          1 .. bytes left in the content
    5       n     bytes  value
    EXIF  b"Exif\\0\\0" then the TIFF-structured block, as in JPEG's APP1.  From
          a file, the pixels are stored upright: the source's orientation
          is applied to them and the Orientation tag (0x0112) is 1 or
          absent.  From an image in memory (a PIL image), its pixels and
          EXIF are stored as they are, Orientation included, as Pillow's
          own formats save them.
    ICC   the source's profile; its colour space (bytes 16-19) is "GRAY" for
          modes L and LA, "RGB " for RGB and RGBA (others are not written).
    XMP   the source's XMP packet (UTF-8 XML), as embedded.
    Readers check the framing; the values are what the writer puts there.

Limits: MAX_SIDE is 65536, MAX_METADATA 16 MiB (16 << 20 bytes).  Beyond
the format, rescodec's reader refuses by default an image of more than 2^27
pixels (a setting: --max-pixels, max_pixels=), and reads no more of a stream
than 16 bytes a pixel of the declared size plus 17 MiB.

bpp reported by rescodec always counts the whole file, header included.
"""
from __future__ import annotations

import numbers
import struct
import zlib
from dataclasses import dataclass, field

import zstandard

from .errors import CorruptError, LimitError, NotRscError, TruncatedError, UnsupportedVersionError
from .lossless import JXL, JXL_PLANES   # codec ids newer than versions 1 and 3
from .mask_coding import EMPTY as MASK_EMPTY   # the all-zero mask's codec id, newer than version 5
from .settings import MAX_LR_STEP, NAME_RE, EncodeSettings
from . import zstd_frame

MAGIC = b"RSC\x1a"          # \x1a stops `type` on Windows, like PNG's
VERSION = 7                 # what we write (pack(legacy=True): 4-6, the layout rescodec 0.5 reads)
VERSION_X1 = 8              # what we write for an x1 file (scale 1), which version 7 cannot hold
VERSION_X1_GAINS = 9        # ... and for one whose mask section holds the head's gain map
READS = (1, 2, 3, 4, 5, 6, 7, 8, 9)   # what we read
MAX_SIDE = 1 << 16          # 65536: padded sides stay far from int32 overflow in torch
MAX_PIXELS = 1 << 27        # 134 MP default bomb guard; callers may raise it
# Metadata content: EXIF fits in 64 KiB (one JPEG APP1); large print ICC
# profiles and XMP run to a few MB.  16 MiB holds them and bounds what a
# reader allocates before it has checked anything.
MAX_METADATA = 16 << 20
# The most bytes a file of W x H pixels takes, a bound on what a reader reads
# of a stream: raw RGBA is 4 a pixel, an AVIF of noise at quality 100 3.7 for
# RGB; the constant holds the header, metadata and a tiny picture's AVIF boxes.
MAX_BYTES_PER_PIXEL = 16
MAX_FILE_OVERHEAD = MAX_METADATA + (1 << 20)
HEAD_BYTES = 64             # what read() takes first: the magic and the declared size

MODES = {0: "L", 1: "RGB", 2: "RGBA", 3: "LA"}
MODE_IDS = {v: k for k, v in MODES.items()}
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}
SECTION_LR, SECTION_MASK, SECTION_ALPHA, SECTION_METADATA = 1, 2, 3, 4
SECTION_NAMES = {SECTION_LR: "LR", SECTION_MASK: "mask", SECTION_ALPHA: "alpha",
                 SECTION_METADATA: "metadata"}
FLAG_ALPHA = 1
STEP_SHIFT, STEP_MASK = 1, MAX_LR_STEP - 1   # flags bits 1-4: LR step - 1 (version 3)
FLAG_YCC = 1 << 5                            # LR codes in YCbCr (version 4)
FLAG_AVIF = 1 << 6                           # the LR is AV1 (version 5)
FLAG_X1 = 1 << 1                             # scale 1, with FLAG_AVIF only (versions 8-9)
AVIF = 5                                     # its payload's codec ids (av1_item.py): an AVIF file,
AV1 = 6                                      # or its AV1 item alone (version 6),
AV1_SHORT = 7                                # without its fixed av1C and nclx bytes (version 7)
_LOSSY = (AVIF, AV1, AV1_SHORT)
_NCLX = bytes.fromhex("0001000d000680")     # sRGB primaries and transfer, BT.601 matrix, full range
FLAG_METADATA = 1 << 7                       # metadata section present (version 5)
METADATA_ZSTD = 0                            # the metadata payload's one codec id
_CODEC_IDS = {SECTION_LR: range(8), SECTION_ALPHA: range(4), SECTION_MASK: range(3),   # the spec's
              SECTION_METADATA: (METADATA_ZSTD,)}
METADATA_TAGS = {1: "exif", 2: "icc_profile", 3: "xmp"}   # tag -> PIL's .info key
_TAG_IDS = {v: k for k, v in METADATA_TAGS.items()}

_FIXED = struct.Struct("<4sBBIIBBBBBffIf8sB")   # versions 1-6: bytes 0..43
_SECTION_HEAD = struct.Struct("<BI")                # versions 1-6
FIELD_MASK, FIELD_SEED, FIELD_TEMPERATURE, FIELD_NAME = 0x10, 0x20, 0x40, 0x80   # version 7
MASK_DEFAULTS = (1, 2, 65535.0, 1.0)   # bits, norm, T, sigma left out of a version 7 header
_X1_NO_FIELDS = FIELD_MASK | FIELD_SEED | FIELD_TEMPERATURE   # an x1 file has no mask and no Z


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
    lr_step: int = 1            # the LR quantiser's step q (lr_quant.lr_grid)
    lr_space: str = "rgb"       # the LR codes' colour space, rgb or ycc (lr_quant)
    lr_codec: str = "lossless"  # or "avif": the LR through a lossy codec (lossy_lr)
    has_metadata: bool = False  # a metadata section (EXIF, ICC, XMP) follows the others
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


def check_sides(width: int, height: int) -> None:
    """LimitError where a side is beyond what the format holds (the encoder asks first)."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise LimitError(f"image size {width}x{height} is " + (
            "empty" if min(width, height) < 1 else f"beyond the limit of {MAX_SIDE} per side"))


def _check_size(width: int, height: int, max_pixels: int) -> None:
    check_sides(width, height)
    if width * height > max_pixels:
        raise LimitError(f"image of {width}x{height} = {width * height} pixels is over "
                         f"the limit of {max_pixels} (raise it with --max-pixels, or max_pixels=)")


def _check_header(h: Header, max_pixels: int) -> None:
    _check_size(h.width, h.height, max_pixels)
    if h.mode not in MODE_IDS:
        raise CorruptError(f"invalid .rsc header: mode {h.mode!r}")
    if len(h.weights_hash) != 8 or not NAME_RE.match(h.model):
        raise CorruptError("invalid .rsc header: model name or weights hash")
    if h.scale == 1 and h.lr_codec != "avif":
        raise CorruptError("invalid .rsc header: an x1 file's picture is AVIF")
    try:     # the encoder's own checks: a field it could not have written is corrupt
        EncodeSettings.of_header(h).validate()
    except ValueError as e:
        raise CorruptError(f"invalid .rsc header: {e}") from None


def _kinds(has_alpha: bool, has_metadata: bool) -> list:
    """The sections a file holds, in their order: LR and mask, then the optional ones."""
    return [SECTION_LR, SECTION_MASK] + ([SECTION_ALPHA] if has_alpha else []) \
        + ([SECTION_METADATA] if has_metadata else [])


def _uvar(n: int) -> bytes:
    """LEB128: 7 bits a byte, low bits first, bit 7 set on all but the last."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _flags(header: Header) -> int:
    return ((FLAG_ALPHA if header.has_alpha else 0) | (header.lr_step - 1) << STEP_SHIFT
            | (FLAG_YCC if header.lr_space == "ycc" else 0)
            | (FLAG_AVIF if header.lr_codec == "avif" else 0)
            | (FLAG_METADATA if header.has_metadata else 0))


def pack(header: Header, lr: bytes, mask: bytes, alpha: bytes | None = None,
         metadata: bytes | None = None, *, store_name: bool = True, legacy: bool = False) -> bytes:
    """Header and section payloads (codec byte first) -> .rsc bytes.
    `metadata`: a payload from pack_metadata(), given exactly when the header
    says has_metadata.  store_name=False leaves the model's name out (version
    7): the reader finds it by the weights hash.  legacy=True writes the layout
    of versions 4-6, which rescodec 0.5 reads."""
    _check_header(header, max_pixels=1 << 62)
    if (alpha is not None) != header.has_alpha:
        raise ValueError("alpha section must be given exactly when the mode has alpha")
    if (metadata is not None) != header.has_metadata:
        raise ValueError("metadata section must be given exactly when the header says so")
    if (bool(lr) and lr[0] in _LOSSY) != (header.lr_codec == "avif"):
        raise ValueError("the LR payload's codec must be AVIF or AV1 exactly when the header says so")
    payloads = [p for p in (lr, mask, alpha, metadata) if p is not None]
    h = header
    x1 = h.scale == 1
    if legacy:
        if x1:
            raise ValueError("versions 4-6 hold no x1 file")
        return _pack_legacy(header, payloads)
    mask_fields = (h.mask_bits, h.mask_norm, _f32(h.mask_threshold), _f32(h.mask_sigma))
    fields = (MODE_IDS[h.mode] | (0 if x1 else (h.scale.bit_length() - 2) << 2)
              | (FIELD_MASK if mask_fields != MASK_DEFAULTS else 0)
              | (FIELD_SEED if h.z_seed else 0)
              | (FIELD_TEMPERATURE if _f32(h.z_temperature) else 0)
              | (FIELD_NAME if store_name else 0))
    if x1 and fields & _X1_NO_FIELDS:
        raise ValueError("an x1 file has no mask fields, Z seed or Z temperature")
    version = (VERSION_X1_GAINS if mask[0] != MASK_EMPTY else VERSION_X1) if x1 else VERSION
    flags = _flags(h) | (FLAG_X1 if x1 else 0)
    out = [MAGIC, bytes([version, flags, fields]), _uvar(h.width), _uvar(h.height)]
    if fields & FIELD_MASK:
        out.append(struct.pack("<Bff", h.mask_bits | (h.mask_norm - 1) << 2, h.mask_threshold, h.mask_sigma))
    if fields & FIELD_SEED:
        out.append(struct.pack("<I", h.z_seed))
    if fields & FIELD_TEMPERATURE:
        out.append(struct.pack("<f", h.z_temperature))
    out.append(h.weights_hash)
    if store_name:
        out += [bytes([len(h.model)]), h.model.encode("ascii")]
    for payload in payloads:
        out += [_uvar(len(payload)), payload]
    body = b"".join(out)
    return body + struct.pack("<I", zlib.crc32(body))


def short_av1(payload: bytes) -> bytes | None:
    """A codec id 6 payload -> the codec id 7 payload that stands for it, or None."""
    av1c, nclx = payload[1:5], payload[5:12]
    if len(payload) < 13 or payload[0] != AV1 or av1c[0] != 0x81 or av1c[2:] != b"\0\0" or nclx != _NCLX:
        return None
    return bytes([AV1_SHORT, av1c[1]]) + payload[12:]


def long_av1(payload: bytes) -> bytes:
    """A codec id 7 payload -> the codec id 6 payload it stands for."""
    if len(payload) < 3:
        raise CorruptError("corrupt .rsc file (LR section: short AV1 payload)")
    return bytes([AV1, 0x81, payload[1], 0, 0]) + _NCLX + payload[2:]


def _pack_legacy(header: Header, payloads: list) -> bytes:
    if payloads[0][0] == AV1_SHORT:   # versions 1-6 have no codec id 7
        payloads = [long_av1(payloads[0])] + payloads[1:]
    lr, mask = payloads[:2]
    if lr[0] == AV1 or mask[0] == MASK_EMPTY:
        version = 6
    else:
        version = 5 if header.lr_codec == "avif" or header.has_metadata else 4
    name = header.model.encode("ascii")
    head = _FIXED.pack(MAGIC, version, _flags(header),
                       header.width, header.height, header.channels, MODE_IDS[header.mode],
                       header.scale, header.mask_bits, header.mask_norm, header.mask_threshold,
                       header.mask_sigma, header.z_seed, header.z_temperature,
                       header.weights_hash, len(name)) + name
    out = [head, struct.pack("<I", zlib.crc32(head))]
    for kind, payload in zip(_kinds(header.has_alpha, header.has_metadata), payloads):
        body = _SECTION_HEAD.pack(kind, len(payload)) + payload
        out += [body, struct.pack("<I", zlib.crc32(body))]
    return b"".join(out)


class _Reader:
    """Size-checked reads: a short file is a TruncatedError naming the place."""

    def __init__(self, data: bytes, end: int | None = None):
        self.data, self.pos = memoryview(data), 0
        self.end = len(data) if end is None else end

    def skip(self, n: int, where: str) -> int:
        """Move past n bytes; -> where they start."""
        if n > self.end - self.pos:
            raise TruncatedError(f"truncated .rsc file ({where})")
        self.pos += n
        return self.pos - n

    def take(self, n: int, where: str) -> bytes:
        start = self.skip(n, where)
        return bytes(self.data[start:start + n])

    def uvar(self, where: str, max_bytes: int) -> int:
        """A LEB128 number in its shortest form, at most max_bytes long."""
        n = 0
        for i in range(max_bytes):
            b = self.take(1, where)[0]
            n |= (b & 0x7F) << 7 * i
            if not b & 0x80:
                if b == 0 and i:
                    break   # a longer form than needed
                return n
        raise CorruptError(f"corrupt .rsc file ({where}: bad number)")

    @property
    def left(self) -> int:
        return self.end - self.pos


def unpack(data: bytes, max_pixels: int = MAX_PIXELS, names=None) -> RscFile:
    """.rsc bytes -> RscFile, validating every header field, the sections'
    framing, lengths and codec ids, and the CRC; the payloads are checked where
    they are decoded (decoder.py; codec.check, `info --check`, decodes them
    all without the network).  Raises only RscError.
    `names`: weights hash -> registered model name or None, for version 7
    files that leave the name out (else the name is "sha256-" and the hash
    in hex)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("unpack() takes bytes")
    check_max_pixels(max_pixels)
    _check_start(data)
    if len(data) >= 5 and data[4] >= 7:
        header, flags, r = _read_compact_header(data, names)
    else:
        header, flags, r = _read_legacy_header(data)
    _check_header(header, max_pixels)
    sizes = {"header": r.pos}
    sections = {}
    for kind in _kinds(header.has_alpha, header.has_metadata):
        where = SECTION_NAMES[kind]
        start = r.pos
        payload = _read_section(r, kind, header.version)
        if not payload:
            raise CorruptError(f"corrupt .rsc file (empty {where} section)")
        _check_codec(kind, payload, header, flags)
        sections[kind] = payload
        sizes[where] = r.pos - start
    if r.left:
        raise CorruptError(f"corrupt .rsc file ({r.left} bytes after the last section)")
    if header.version >= 7:
        sizes["header"] += 4   # the file's CRC
    return RscFile(header, sections, sizes)


def _check_start(data: bytes) -> None:
    """The magic and the version byte, which any reader checks first."""
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        if not data:   # e.g. a file object read from its end
            raise TruncatedError("empty .rsc data (0 bytes)")
        if len(data) < 4 and MAGIC.startswith(bytes(data)):
            raise TruncatedError("truncated .rsc file (magic)")
        raise NotRscError("not an .rsc file (bad magic)")
    if len(data) >= 5 and data[4] not in READS:
        raise UnsupportedVersionError(f"unsupported .rsc version {data[4]} "
                                      f"(this rescodec reads {READS[0]}-{READS[-1]})")


def declared_size(head: bytes) -> tuple | None:
    """(width, height) from a file's first bytes, or None where they end before it."""
    try:
        if head[4] < 7:
            return struct.unpack_from("<II", head, 6)
        r = _Reader(head)
        r.pos = 7
        return r.uvar("width", 3), r.uvar("height", 3)
    except (IndexError, struct.error, TruncatedError):
        return None


def read_up_to(f, n: int) -> bytes:
    """Up to n bytes of a binary file object; fewer only at its end (a pipe gives what it has)."""
    parts, got = [], 0
    while got < n:
        part = f.read(min(n - got, 1 << 20))   # read(n) would reserve all n bytes first
        if isinstance(part, str):
            raise TypeError("the file gives text, not bytes: open it in binary mode ('rb')")
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read(f, max_pixels: int = MAX_PIXELS) -> bytes:
    """The .rsc bytes of a binary file object, from where it is, in bounded
    memory: the magic and the declared size are checked on the first bytes,
    before the rest is read, and no more is read than a file of that size
    takes (a 1 GB file of another kind, /dev/zero).  unpack() checks the rest."""
    check_max_pixels(max_pixels)
    head = read_up_to(f, HEAD_BYTES)
    _check_start(head)
    size = declared_size(head)
    if size is None:   # the file ends within its first bytes: unpack says where
        return head
    _check_size(*size, max_pixels)
    most = size[0] * size[1] * MAX_BYTES_PER_PIXEL + MAX_FILE_OVERHEAD
    data = head + read_up_to(f, most + 1 - len(head))
    if len(data) > most:
        raise CorruptError(f"corrupt .rsc file (over {most} bytes, more than a file of "
                           f"{size[0]}x{size[1]} pixels takes)")
    return data


def check_max_pixels(max_pixels) -> None:
    """`max_pixels` as the API takes it: a positive int (TypeError otherwise,
    ValueError below 1).  There is no "no limit": a number above the image's
    size lifts it."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral):
        raise TypeError(f"max_pixels must be a positive int, not {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, not {max_pixels}")


def _read_legacy_header(data: bytes):
    """Versions 1-6: fixed fields, the name, and the header's CRC."""
    r = _Reader(data)
    fixed = r.take(_FIXED.size, "header")
    (_, _, flags, width, height, channels, mode_id, scale, bits, norm, thr, sigma, seed, temp,
     whash, nlen) = _FIXED.unpack(fixed)
    name_raw = r.take(nlen, "model name")
    head_crc = struct.unpack("<I", r.take(4, "header CRC"))[0]
    if zlib.crc32(fixed + name_raw) != head_crc:
        raise CorruptError("corrupt .rsc file (header CRC mismatch)")
    known = (FLAG_ALPHA | (STEP_MASK << STEP_SHIFT if data[4] >= 3 else 0)
             | (FLAG_YCC if data[4] >= 4 else 0) | (FLAG_AVIF | FLAG_METADATA if data[4] >= 5 else 0))
    if flags & ~known or mode_id not in MODES or scale == 1:   # x1 needs version 8 or 9
        raise CorruptError(f"invalid .rsc header: flags {flags:#x}, mode {mode_id}, scale {scale}")
    header = _header(flags, width, height, mode_id, scale, bits, norm, thr, sigma, seed, temp,
                     whash, _name(name_raw), data[4])
    if channels != header.channels:
        raise CorruptError("invalid .rsc header: channels or alpha flag disagree with the mode")
    return header, flags, r


def _read_compact_header(data: bytes, names):
    """Versions 7-9: the file's CRC first, then the fields the fields byte lists."""
    if len(data) < 7:
        raise TruncatedError("truncated .rsc file (header)")
    r = _Reader(data, end=len(data) - 4)
    version, flags, fields = data[4], data[5], data[6]
    x1 = version in (VERSION_X1, VERSION_X1_GAINS)
    if x1:   # an x1 file, and only that
        if flags & (FLAG_X1 | FLAG_AVIF) != FLAG_X1 | FLAG_AVIF or fields & 0x0C:
            raise CorruptError(f"invalid .rsc header: version {version} with flags {flags:#x}, fields {fields:#x}")
        flags &= ~FLAG_X1
    r.pos = 7
    width = r.uvar("width", 3)
    height = r.uvar("height", 3)
    bits, norm, thr, sigma = MASK_DEFAULTS
    if fields & FIELD_MASK:
        packed, thr, sigma = struct.unpack("<Bff", r.take(9, "mask parameters"))
        if packed & ~7:
            raise CorruptError(f"invalid .rsc header: mask byte {packed:#x}")
        bits, norm = packed & 3, (packed >> 2) + 1
    seed = struct.unpack("<I", r.take(4, "Z seed"))[0] if fields & FIELD_SEED else 0
    temp = struct.unpack("<f", r.take(4, "Z temperature"))[0] if fields & FIELD_TEMPERATURE else 0.0
    whash = r.take(8, "weights hash")
    if fields & FIELD_NAME:
        name = _name(r.take(r.take(1, "model name")[0], "model name"))
    else:
        name = (names(whash) if names else None) or "sha256-" + whash.hex()
    # every section's length is read before the CRC: a short file is a TruncatedError
    end = r.pos
    for kind in _kinds(flags & FLAG_ALPHA, flags & FLAG_METADATA):
        where = SECTION_NAMES[kind]
        r.skip(r.uvar(f"{where} section length", 5), f"{where} section")
    if struct.unpack("<I", bytes(data[-4:]))[0] != zlib.crc32(data[:-4]):
        if r.left and struct.unpack_from("<I", data, r.pos)[0] == zlib.crc32(data[:r.pos]):
            # a whole file, its CRC right after the last section, then more
            raise CorruptError(f"corrupt .rsc file ({r.left} bytes after the last section)")
        raise CorruptError("corrupt .rsc file (CRC mismatch)")
    r.pos = end
    if flags & ~(FLAG_ALPHA | STEP_MASK << STEP_SHIFT | FLAG_YCC | FLAG_AVIF | FLAG_METADATA):
        raise CorruptError(f"invalid .rsc header: flags {flags:#x}")
    scale = 1 if x1 else 1 << ((fields >> 2 & 3) + 1)
    header = _header(flags, width, height, fields & 3, scale, bits, norm,
                     thr, sigma, seed, temp, whash, name, version)
    if (fields & FIELD_MASK and (bits, norm, thr, sigma) == MASK_DEFAULTS) \
            or (fields & FIELD_SEED and not seed) or (fields & FIELD_TEMPERATURE and not temp):
        raise CorruptError(f"invalid .rsc header: fields {fields:#x} store a default value")
    return header, flags, r


def _name(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptError("invalid .rsc header: model name is not ASCII") from None


def _header(flags, width, height, mode_id, scale, bits, norm, thr, sigma, seed, temp, whash,
            name, version) -> Header:
    if mode_id not in MODES:
        raise CorruptError(f"invalid .rsc header: mode {mode_id}")
    if flags & FLAG_AVIF and flags & (FLAG_YCC | STEP_MASK << STEP_SHIFT):
        raise CorruptError(f"invalid .rsc header: flags {flags:#x} (an AVIF LR has no step or space)")
    header = Header(width, height, MODES[mode_id], scale, bits, norm, thr, sigma, seed, temp,
                    whash, name, lr_step=(flags >> STEP_SHIFT & STEP_MASK) + 1,
                    lr_space="ycc" if flags & FLAG_YCC else "rgb",
                    lr_codec="avif" if flags & FLAG_AVIF else "lossless",
                    has_metadata=bool(flags & FLAG_METADATA), version=version)
    if bool(flags & FLAG_ALPHA) != header.has_alpha:
        raise CorruptError("invalid .rsc header: channels or alpha flag disagree with the mode")
    return header


def _read_section(r: _Reader, kind: int, version: int) -> bytes:
    where = SECTION_NAMES[kind]
    if version >= 7:
        return r.take(r.uvar(f"{where} section length", 5), f"{where} section")
    head = r.take(_SECTION_HEAD.size, f"{where} section header")
    got, length = _SECTION_HEAD.unpack(head)
    if got != kind:
        raise CorruptError(f"corrupt .rsc file (expected the {where} section, found kind {got})")
    payload = r.take(length, f"{where} section")
    crc = struct.unpack("<I", r.take(4, f"{where} section CRC"))[0]
    if zlib.crc32(head + payload) != crc:
        raise CorruptError(f"corrupt .rsc file ({where} section CRC mismatch)")
    return payload


def _check_codec(kind: int, payload: bytes, header: Header, flags: int) -> None:
    """A section's codec id against its kind, the flags and the version."""
    where, codec = SECTION_NAMES[kind], payload[0]
    if codec not in _CODEC_IDS[kind]:
        raise CorruptError(f"corrupt .rsc file ({where} section: unknown codec id {codec})")
    if kind == SECTION_MASK and header.version < 6 and codec == MASK_EMPTY:
        raise CorruptError("corrupt .rsc file (mask section: codec id 2 before version 6)")
    if kind == SECTION_MASK and header.scale == 1 and (codec == MASK_EMPTY) != (header.version == VERSION_X1):
        raise CorruptError(f"corrupt .rsc file (mask section: codec id {codec} in a version "
                           f"{header.version} file; 8 has no gain map, 9 has one)")
    if kind == SECTION_METADATA:   # its one codec id, checked above
        return
    if header.version == 1 and kind != SECTION_MASK and codec == JXL:
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id 3 in a version 1 file)")
    elif header.version < 4 and kind != SECTION_MASK and codec == JXL_PLANES:
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id 4 before version 4)")
    elif header.version < 6 and kind != SECTION_MASK and codec == AV1:
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id 6 before version 6)")
    elif header.version < 7 and kind != SECTION_MASK and codec == AV1_SHORT:
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id 7 before version 7)")
    elif kind != SECTION_MASK and (codec in _LOSSY) != (kind == SECTION_LR and header.lr_codec == "avif"):
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id {codec} "
                           f"with flags {flags:#x})")
    elif header.version >= 7 and codec == AV1 and short_av1(payload) is not None:   # one file, one encoding
        raise CorruptError(f"corrupt .rsc file ({where} section: codec id 6 where codec id 7 holds it)")


def pack_metadata(items: dict) -> bytes:
    """{"exif", "icc_profile", "xmp": bytes} -> the metadata section's payload.
    Empty values are left out; at least one must remain."""
    unknown = set(items) - set(_TAG_IDS)
    if unknown:
        raise ValueError(f"unknown metadata {sorted(unknown)}; choose from {sorted(_TAG_IDS)}")
    content = b"".join(struct.pack("<BI", tag, len(items[name])) + bytes(items[name])
                       for tag, name in sorted(METADATA_TAGS.items()) if items.get(name))
    if not content:
        raise ValueError("no metadata to store")
    if len(content) > MAX_METADATA:
        raise ValueError(f"metadata of {len(content)} bytes is over the limit of {MAX_METADATA}")
    # the frame records its content size (zstandard's default): readers need it
    return bytes([METADATA_ZSTD]) + zstandard.ZstdCompressor(level=12).compress(content)


def unpack_metadata(payload: bytes) -> dict:
    """The metadata section's payload -> {"exif", "icc_profile", "xmp": bytes},
    checked as the spec says.  The declared size is checked before anything
    is allocated.  Raises only RscError."""
    if not payload or payload[0] != METADATA_ZSTD:
        raise CorruptError("corrupt .rsc file (metadata section: codec id)")
    content = zstd_frame.read(payload[1:], "metadata section", limit=MAX_METADATA)
    out, pos, last = {}, 0, 0
    while pos < len(content):
        if len(content) - pos < 5:
            raise CorruptError("corrupt .rsc file (metadata section: truncated entry)")
        tag, n = struct.unpack_from("<BI", content, pos)
        if tag not in METADATA_TAGS or tag <= last:
            raise CorruptError(f"corrupt .rsc file (metadata section: tag {tag} after {last})")
        if not 1 <= n <= len(content) - pos - 5:
            raise CorruptError(f"corrupt .rsc file (metadata section: length {n} of tag {tag})")
        out[METADATA_TAGS[tag]] = content[pos + 5:pos + 5 + n]
        pos, last = pos + 5 + n, tag
    return out


def looks_like_rsc(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC

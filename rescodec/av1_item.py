"""The AV1 item inside an .rsc file (LR codec ids 5-7; the spec is at the
top of container.py): an AVIF file split into its AV1 item and the two
properties that vary (`split`), the same AVIF rebuilt from them (`wrap`),
and the checks that a payload is one still picture of the LR's size (AV1
sequence and frame headers, ISO-BMFF boxes), so that what rescodec reads is
what libavif would decode.

A file keeps the item, not the AVIF's HEIF boxes: they take 264 bytes,
0.027 bpp on a 280x280 photo, and say nothing the .rsc header does not.
"""
from __future__ import annotations

import struct

from .errors import CorruptError


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

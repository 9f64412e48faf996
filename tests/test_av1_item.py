"""The AV1 item of an AVIF small picture (LR codec ids 5-7): split and wrap,
and the checks that a payload is one still picture of the LR's size."""
import struct
from dataclasses import replace

import numpy as np
import pytest

import rescodec
from rescodec import av1_item, codec, container, lossy_lr
from rescodec.errors import CorruptError
from rescodec.settings import EncodeSettings

from conftest import as_legacy


def _avif(photo, q, scale=2, **kw):
    return codec.encode_ex(photo, EncodeSettings(scale=scale, lr_codec="avif", lr_quality=q, **kw))


def test_the_lr_section_is_the_av1_item_of_the_avif(photo):
    """The file keeps Pillow's AVIF of the LR less its HEIF boxes (an AVIF file
    that wrap() builds), and the thumbnail is that AVIF's pixels."""
    enc = _avif(photo, 40)
    f = container.unpack(enc.data)
    short = f.sections[container.SECTION_LR]
    shape = f.header.lr_size + (3,)
    assert short[0] == container.AV1_SHORT           # the usual av1C and nclx: 10 bytes less
    payload = container.long_av1(short)
    assert payload[0] == container.AV1 and len(payload) == len(short) + 10
    assert container.short_av1(payload) == short
    avif = av1_item.wrap(payload[1:], shape)
    assert av1_item.split(avif, shape) == payload[1:]
    assert len(avif) - len(short) > 260             # the boxes it leaves out
    legacy = container.unpack(as_legacy(enc.data))   # versions 1-6 get codec id 6
    assert legacy.header.version == 6 and legacy.sections[container.SECTION_LR] == payload
    lr = lossy_lr.decode(avif, shape)
    assert lr.shape == (photo.shape[0] // 2, photo.shape[1] // 2, 3)
    assert np.array_equal(lr, codec.thumbnail(enc.data))


@pytest.mark.parametrize("shape,q", [((1, 1, 3), 0), ((7, 300, 3), 50), ((64, 96, 3), 100)])
def test_split_and_wrap_are_inverse(shape, q):
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    avif = lossy_lr.encode(rgb, q)
    bare = av1_item.split(avif, shape)
    assert bare is not None and av1_item.wrap(bare, shape) == avif
    assert av1_item.split(avif, (shape[0] + 1, shape[1])) is None    # not what wrap would build
    assert av1_item.split(b"not an avif", shape) is None


def test_mutated_bare_av1_decodes_to_the_shape_or_a_corrupt_error(photo):
    """What the CRC cannot catch (a writer's bug, a crafted file): any payload
    ends in the LR's shape or CorruptError, never another exception."""
    enc = _avif(photo[:64, :64], 40)
    f = container.unpack(enc.data)
    shape = f.header.lr_size + (3,)
    payload = bytearray(f.sections[container.SECTION_LR][1:])
    rng = np.random.default_rng(0)
    for _ in range(60):
        bad = bytearray(payload)
        for i in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[i] ^= int(rng.integers(1, 256))
        try:
            assert lossy_lr.decode(av1_item.wrap(bytes(bad), shape), shape).shape == shape
        except CorruptError:
            pass


def test_damaged_bare_av1_is_a_corrupt_error(photo):
    enc = _avif(photo[:64, :64], 40)
    f = container.unpack(enc.data)
    shape = f.header.lr_size + (3,)
    payload = f.sections[container.SECTION_LR]
    for bad in (payload[1:5], payload[1:20], payload[1:12] + bytes(len(payload) - 12)):
        with pytest.raises(CorruptError):
            lossy_lr.decode(av1_item.wrap(bad, shape), shape)


@pytest.mark.parametrize("hw", [(1, 1), (7, 5), (33, 130), (300, 2)])
def test_the_av1_frame_size_is_read_from_the_sequence_header(hw):
    h, w = hw
    data = lossy_lr.encode(np.full((h, w, 3), 90, np.uint8), 40)
    bare = av1_item.split(data, (h, w, 3))
    assert av1_item.frame_size(bare[av1_item.AV1C_SIZE + av1_item.NCLX_SIZE:]) == (w, h)


def _hand_avif(mdat: bytes, offset: int, length: int, av1c: bytes, nclx: bytes, w: int, h: int) -> bytes:
    """An AVIF in libavif's layout (av1_item.wrap's) whose iloc points at
    mdat[offset:offset + length] and whose ispe says w x h."""
    B = av1_item._box
    ftyp = B(b"ftyp", b"avif" + bytes(4) + b"avifmif1miafMA1B")
    ipco = B(b"ipco", B(b"ispe", struct.pack(">II", w, h), 0) + B(b"pixi", bytes([3, 8, 8, 8]), 0)
             + B(b"av1C", av1c) + B(b"colr", b"nclx" + nclx))
    ipma = B(b"ipma", struct.pack(">IHB", 1, 1, 4) + bytes([1, 2, 0x83, 4]), 0)

    def meta(o):
        return B(b"meta", B(b"hdlr", bytes(4) + b"pict" + bytes(13), 0) + B(b"pitm", struct.pack(">H", 1), 0)
                 + B(b"iloc", bytes([0x44, 0]) + struct.pack(">HHHHII", 1, 1, 0, 1, o, length), 0)
                 + B(b"iinf", struct.pack(">H", 1) + B(b"infe", struct.pack(">HH", 1, 0) + b"av01Color\0", 2), 0)
                 + B(b"iprp", ipco + ipma), 0)
    start = len(ftyp + meta(0)) + 8
    return ftyp + meta(start + offset) + B(b"mdat", mdat)


def test_a_whole_avif_whose_frame_is_not_the_small_pictures_is_corrupt(photo, monkeypatch):
    """Codec id 5 keeps the AVIF file whole, and libavif decodes whatever its
    iloc points to, scaled to its ispe's size: a small matching item first in
    the mdat and iloc on a large one after it, or a small sequence header
    before a large frame, decoded a 256x256 frame for a 48x32 small picture."""
    rng = np.random.default_rng(0)
    small, big = (av1_item.split(lossy_lr.encode(rng.integers(0, 255, (h, w, 3), np.uint8), 50, 8), (h, w, 3))
                  for h, w in ((32, 48), (256, 256)))
    cut = av1_item.AV1C_SIZE + av1_item.NCLX_SIZE
    av1c, nclx, si, bi = big[:av1_item.AV1C_SIZE], big[av1_item.AV1C_SIZE:cut], small[cut:], big[cut:]
    shape = (32, 48, 3)
    good = _hand_avif(si, 0, len(si), av1c, nclx, 48, 32)
    av1_item.check_whole(good, shape, 7)
    assert lossy_lr.decode(good, shape).shape == shape
    for bad, said in ((_hand_avif(bi, 0, len(bi), av1c, nclx, 48, 32),
                       "an AV1 frame of 256x256 for a small picture of 48x32"),
                      (_hand_avif(si + bi, len(si), len(bi), av1c, nclx, 48, 32), "an AV1 frame of 256x256"),
                      (_hand_avif(si + bi, 0, len(si + bi), av1c, nclx, 48, 32), "sequence headers of different sizes"),
                      (_hand_avif(si, 0, len(si) + 1, av1c, nclx, 48, 32), "item outside the mdat"),
                      (b"no boxes", "item cannot be found"),
                      (good.replace(b"mdat", b"mdaX"), "other than one ftyp, meta and mdat"),
                      (good + av1_item._box(b"moov", bytes(8)), "other than one ftyp, meta and mdat"),
                      (good.replace(b"ftypavif", b"ftypavis", 1), "not a still image")):   # a track: decoded first
        with pytest.raises(CorruptError, match=said):
            av1_item.check_whole(bad, shape, 7)
    # a bare payload (codec ids 6 and 7): the same check of every sequence header
    with pytest.raises(CorruptError, match="sequence headers of different sizes"):
        av1_item.wrap(av1c + nclx + si + bi, shape)
    # and through a whole file: the header's size in the ispe, over another frame
    monkeypatch.setattr(av1_item, "split", lambda avif, shape: None)
    f = codec.unpack(rescodec.encode(photo[:64, :96], quality=20))
    lr, mask = f.sections[container.SECTION_LR], f.sections[container.SECTION_MASK]
    assert lr[0] == container.AVIF
    i = lr.index(b"ispe") + 8
    assert struct.unpack(">II", lr[i:i + 8]) == (48, 32)
    big_ispe = lr[:i] + struct.pack(">II", 96, 64) + lr[i + 8:]
    with pytest.raises(CorruptError, match="an AV1 frame of 48x32 for a small picture of 96x64"):
        rescodec.decode(container.pack(replace(f.header, width=192, height=128), big_ispe, mask))


def test_a_full_sequence_header_is_refused(photo):
    """libaom's stills use the reduced header (AV1 spec 5.5.1), where every
    frame has the header's size; with a full one a frame may set its own
    (frame_size_override_flag), and libavif scales it to the ispe's: a
    798-byte file decoded a 67 MP frame for a 32x24 picture."""
    bits = []

    def f(n, v):
        bits.extend(int(c) for c in format(v, f"0{n}b"))
    f(3, 0), f(1, 1), f(1, 0)                       # profile, still_picture, no reduced header
    f(1, 0), f(1, 0), f(5, 0), f(12, 0), f(5, 8), f(1, 0)   # no timing or delay; one operating point
    f(4, 5), f(4, 4), f(6, 31), f(5, 23)            # frame size bits, max frame size - 1: 32x24
    bits.extend([0] * (-len(bits) % 8))
    payload = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
    obu = bytes([1 << 3 | 1 << 1, len(payload)]) + payload   # OBU_SEQUENCE_HEADER with its size
    with pytest.raises(ValueError, match="a full sequence header"):
        av1_item.frame_size(bytes([0x12, 0]) + obu)   # after a temporal delimiter

    def reduced(profile, high_bitdepth):   # 32x24, then the 6 tool flags and color_config's first bit
        bits.clear()
        f(3, profile), f(1, 1), f(1, 1), f(5, 8), f(4, 5), f(4, 4), f(6, 31), f(5, 23), f(6, 0), f(1, high_bitdepth)
        bits.extend([1] + [0] * (-(len(bits) + 1) % 8))   # trailing bits
        body = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
        return bytes([1 << 3 | 1 << 1, len(body)]) + body
    assert av1_item.frame_size(reduced(1, 0)) == (32, 24)
    for profile, high in ((1, 1), (0, 0), (2, 0)):   # 10 bits; 4:2:0 or grey; profile 2
        with pytest.raises(ValueError, match="another format than 8-bit 4:4:4"):
            av1_item.frame_size(reduced(profile, high))
    # in a file: the item's own reduced header swapped for the full one
    f_ = codec.unpack(rescodec.encode(photo[:48, :64], quality=20))
    lr = f_.sections[container.SECTION_LR]
    assert lr[0] == container.AV1_SHORT and av1_item.frame_size(lr[2:]) == (32, 24)
    assert lr[2:4] == b"\x12\x00" and lr[4] >> 3 & 15 == 1 and lr[4] & 2 and lr[5] < 128
    bad = lr[:4] + obu + lr[6 + lr[5]:]   # after the temporal delimiter, the sequence header and its size
    with pytest.raises(CorruptError, match="an AV1 item with a full sequence header"):
        rescodec.decode(container.pack(f_.header, bad, f_.sections[container.SECTION_MASK]))


def test_an_av1_item_of_two_frames_is_corrupt(photo):
    """libavif shows the first frame of an item and another decoder may show
    the last: a second, hidden picture rode along, and padding after it."""
    shape = (24, 32, 3)
    black, white = (av1_item.split(lossy_lr.encode(np.full(shape, v, np.uint8), 50), shape) for v in (0, 255))
    cut = av1_item.AV1C_SIZE + av1_item.NCLX_SIZE
    assert np.array_equal(lossy_lr.decode(av1_item.wrap(black, shape), shape), np.zeros(shape, np.uint8))
    with pytest.raises(CorruptError, match="an AV1 item of 2 frames"):
        av1_item.wrap(black + white[cut:], shape)
    f = codec.unpack(rescodec.encode(photo[:48, :64], quality=20))
    lr = f.sections[container.SECTION_LR]
    with pytest.raises(CorruptError, match="an AV1 item of 2 frames"):
        rescodec.decode(container.pack(f.header, lr + white[cut:], f.sections[container.SECTION_MASK]))


def test_an_av1c_that_contradicts_its_sequence_header_is_corrupt(photo):
    """av1C's seq_profile 0 over a profile 1 (4:4:4) header: thumb -o x.avif
    wrote an AVIF of brand MA1B that a strict reader refuses."""
    f = codec.unpack(rescodec.encode(photo[:48, :64], quality=20))
    lr = f.sections[container.SECTION_LR]
    assert lr[0] == container.AV1_SHORT and lr[1] >> 5 == 1
    for byte in (lr[1] & 0x1F, lr[1] ^ 1):   # profile 0; another level
        bad = container.pack(f.header, bytes([lr[0], byte]) + lr[2:], f.sections[container.SECTION_MASK])
        with pytest.raises(CorruptError, match="av1C record"):
            codec.thumbnail_avif(bad)
        with pytest.raises(CorruptError, match="av1C record"):
            rescodec.decode(bad)
    tier1 = bytearray(container.long_av1(lr))   # a still picture's header implies tier 0
    tier1[3] |= 0x80
    with pytest.raises(CorruptError, match="av1C record"):
        rescodec.decode(container.pack(f.header, bytes(tier1), f.sections[container.SECTION_MASK]))


def test_a_whole_avif_that_a_bare_payload_holds_is_corrupt(photo):
    """One file, one encoding: codec id 5 only where wrap() does not rebuild the file."""
    f = codec.unpack(rescodec.encode(photo[:48, :64], quality=20))
    long = container.long_av1(f.sections[container.SECTION_LR])
    whole = bytes([container.AVIF]) + av1_item.wrap(long[1:], f.header.lr_size)
    with pytest.raises(CorruptError, match="codec id 6 holds"):
        rescodec.decode(container.pack(f.header, whole, f.sections[container.SECTION_MASK]))
    # version 5 had no codec id 6: every AVIF small picture it holds is whole, as rescodec 0.4 wrote it
    data = rescodec.encode(photo[:48, :64], scale=2, quality=20, threshold=5.0)   # a mask: no id 2, version 5
    f = codec.unpack(data)
    whole = bytes([container.AVIF]) + av1_item.wrap(container.long_av1(f.sections[container.SECTION_LR])[1:],
                                                    f.header.lr_size)
    v5 = container.pack(f.header, whole, f.sections[container.SECTION_MASK], legacy=True)
    assert v5[4] == 5 and np.array_equal(np.asarray(rescodec.decode(v5)), np.asarray(rescodec.decode(data)))

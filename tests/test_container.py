import io
import struct
import zlib

import pytest

from rescodec import container
from rescodec.container import Header, pack, unpack
from rescodec.errors import (CorruptError, LimitError, NotRscError, RscError, TruncatedError,
                             UnsupportedVersionError)

from conftest import Stream, as_version, random_flips, with_header


def _header(**kw):
    base = dict(width=33, height=17, mode="RGB", scale=4, mask_bits=2, mask_norm=2,
                mask_threshold=50.0, mask_sigma=1.0, z_seed=1234, z_temperature=0.5,
                weights_hash=bytes(range(8)), model="bdflow-x4-v1")
    base.update(kw)
    return Header(**base)


def _file(alpha=False, legacy=False, **kw):
    h = _header(mode="RGBA" if alpha else "RGB", **kw)
    return pack(h, b"\x01lr-bytes", b"\x00mask", b"\x02alpha" if alpha else None, legacy=legacy)


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip(legacy):
    data = _file(alpha=True, legacy=legacy)
    f = unpack(data)
    assert f.header == _header(mode="RGBA")
    assert f.header.version == (4 if legacy else 7)
    assert f.sections == {1: b"\x01lr-bytes", 2: b"\x00mask", 3: b"\x02alpha"}
    assert sum(f.sizes.values()) == len(data)
    assert f.header.lr_size == (5, 9)


def test_legacy_header_layout_matches_spec():
    data = _file(legacy=True)
    assert data[:4] == b"RSC\x1a" and data[4] == 4 and data[5] == 0
    assert struct.unpack("<II", data[6:14]) == (33, 17)
    assert data[16] == 4 and data[43] == len("bdflow-x4-v1")
    assert data[44:44 + 12] == b"bdflow-x4-v1"
    assert struct.unpack("<I", data[56:60])[0] == zlib.crc32(data[:56])


def test_header_layout_matches_spec():
    data = _file()
    assert data[:4] == b"RSC\x1a" and data[4] == 7 and data[5] == 0
    # RGB (1), x4 (1 << 2), mask fields, seed, temperature and name stored
    assert data[6] == 0x01 | 0x04 | 0xF0
    assert data[7:9] == bytes([33, 17])
    assert struct.unpack("<Bff", data[9:18]) == (2 | 1 << 2, 50.0, 1.0)
    assert struct.unpack("<If", data[18:26]) == (1234, 0.5)
    assert data[26:34] == bytes(range(8)) and data[34] == len("bdflow-x4-v1")
    assert data[35:47] == b"bdflow-x4-v1"
    assert data[47] == 9 and data[48:57] == b"\x01lr-bytes"
    assert data[57] == 5 and data[58:63] == b"\x00mask" and len(data) == 67
    assert struct.unpack("<I", data[63:])[0] == zlib.crc32(data[:63])


def test_defaults_and_a_registered_name_are_left_out():
    h = _header(width=768, height=512, mask_bits=1, mask_threshold=65535.0, z_seed=0,
                z_temperature=0.0, lr_codec="avif")
    data = pack(h, b"\x06av1", b"\x02", store_name=False)
    # 7 fixed bytes, 768 and 512 in two bytes each, the hash, two lengths, the CRC
    assert len(data) == 7 + 4 + 8 + 1 + 4 + 1 + 1 + 4
    assert data[5] == container.FLAG_AVIF and data[6] == 0x01 | 0x04 and data[7:11] == bytes([0x80, 0x06, 0x80, 0x04])
    assert unpack(data).header.model == "sha256-0001020304050607"
    names = {bytes(range(8)): "bdflow-x4-v1"}.get
    assert unpack(data, names=names).header == h


@pytest.mark.parametrize("edit", ["long-number", "default-stored", "mask-byte"])
def test_compact_fields_are_checked(edit):
    data = bytearray(_file())
    if edit == "long-number":     # width 33 as two bytes: not the shortest form
        data[7:8] = bytes([33 | 0x80, 0])
    elif edit == "default-stored":   # temperature bit set, value 0.0
        data[22:26] = struct.pack("<f", 0.0)
    else:
        data[9] = 0x0A           # mask byte 0b1010: bit 3 is not defined
    with pytest.raises(CorruptError):
        unpack(with_header(bytes(data)))


def test_not_rsc():
    with pytest.raises(NotRscError):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(NotRscError):
        unpack(b"GIF89a")


def test_empty_is_truncated():
    with pytest.raises(TruncatedError):
        unpack(b"")


def test_version_1_files_still_read():
    f = unpack(as_version(_file(legacy=True), 1))
    assert f.header.version == 1 and f.sections[1] == b"\x01lr-bytes"


@pytest.mark.parametrize("alpha", [False, True])
def test_version_1_files_never_use_jpeg_xl(alpha):
    # codec id 3 came with version 2 (spec at the top of container.py)
    h = _header(mode="RGBA" if alpha else "RGB")
    lr, al = (b"\x01lr", b"\x03alpha") if alpha else (b"\x03lr", None)
    v2 = pack(h, lr, b"\x00mask", al, legacy=True)
    assert unpack(v2).header.version == 4
    assert unpack(as_version(v2, 2)).header.version == 2
    with pytest.raises(CorruptError, match="codec id 3 in a version 1 file"):
        unpack(as_version(v2, 1))


@pytest.mark.parametrize("step", [1, 2, 4, 16])
def test_lr_step_is_flags_bits_1_to_4(step):
    data = pack(_header(mode="RGBA", lr_step=step), b"\x01lr", b"\x00mask", b"\x02alpha")
    assert data[5] == 1 | (step - 1) << 1
    assert unpack(data).header.lr_step == step


def test_versions_1_and_2_have_no_lr_step():
    # flags bits 1-4 came with version 3: an older file that sets them is corrupt
    data = pack(_header(lr_step=4), b"\x01lr", b"\x00mask", legacy=True)
    for version in (1, 2):
        with pytest.raises(CorruptError, match="flags"):
            unpack(as_version(data, version))
    assert unpack(as_version(_file(legacy=True), 2)).header.lr_step == 1


@pytest.mark.parametrize("space,bit", [("rgb", 0), ("ycc", 0x20)])
def test_lr_space_is_flags_bit_5(space, bit):
    data = pack(_header(lr_step=8, lr_space=space), b"\x03lr", b"\x00mask")
    assert data[5] == (7 << 1) | bit
    assert unpack(data).header.lr_space == space


def test_versions_1_to_3_have_no_lr_space():
    # flags bit 5 came with version 4: an older file that sets it is corrupt
    data = pack(_header(lr_space="ycc"), b"\x03lr", b"\x00mask", legacy=True)
    for version in (2, 3):
        with pytest.raises(CorruptError, match="flags"):
            unpack(as_version(data, version))
    assert unpack(as_version(_file(legacy=True), 3)).header.lr_space == "rgb"


@pytest.mark.parametrize("bit", [0x40, 0x80])
def test_unknown_flags_are_corrupt(bit):
    # bits 6 (AVIF LR) and 7 (metadata) came with version 5; the legacy _file() is version 4
    data = _file(legacy=True)
    with pytest.raises(CorruptError, match="flags"):
        unpack(with_header(data, flags=data[5] | bit))


def test_unsupported_version():
    data = bytearray(_file())
    data[4] = max(container.READS) + 1
    with pytest.raises(UnsupportedVersionError, match=rf"reads 1-{max(container.READS)}\)"):
        unpack(bytes(data))


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("alpha", [False, True])
def test_every_truncation_is_a_typed_error(alpha, legacy):
    data = _file(alpha, legacy)
    for n in range(len(data)):
        with pytest.raises(TruncatedError):
            unpack(data[:n])


@pytest.mark.parametrize("legacy", [False, True])
def test_random_byte_flips_give_only_typed_errors(legacy):
    for d in random_flips(_file(alpha=True, legacy=legacy), seed=0, count=2000):
        try:
            unpack(d)
        except RscError:
            pass


def test_crc_mismatch_in_section():
    data = bytearray(_file(legacy=True))
    data[-6] ^= 0xFF          # inside the mask payload
    with pytest.raises(CorruptError, match="mask section CRC"):
        unpack(bytes(data))


def test_crc_mismatch_in_a_compact_file():
    data = bytearray(_file())
    data[-6] ^= 0xFF          # inside the mask payload
    with pytest.raises(CorruptError, match="CRC mismatch"):
        unpack(bytes(data))


@pytest.mark.parametrize("legacy", [False, True])
def test_trailing_bytes_rejected(legacy):
    data = _file(legacy=legacy)
    with pytest.raises(CorruptError, match="after the last section"):
        unpack(with_header(data + b"x") if not legacy else data + b"x")


@pytest.mark.parametrize("extra", [b"x", b"\0" * 4, b"more bytes"])
def test_a_whole_file_then_more_is_said_so_not_a_crc_mismatch(extra):
    """The CRC is read from the end: a valid file with bytes after it was "CRC mismatch"."""
    with pytest.raises(CorruptError, match=f"{len(extra)} bytes after the last section"):
        unpack(_file() + extra)
    data = bytearray(_file())
    data[-6] ^= 0xFF
    with pytest.raises(CorruptError, match="CRC mismatch"):   # damage inside is still that
        unpack(bytes(data) + extra)


def test_dimension_limits():
    big = pack(_header(width=20000, height=20000), b"\x00a", b"\x00b")
    with pytest.raises(LimitError, match="max-pixels"):
        unpack(big)
    assert unpack(big, max_pixels=20000 * 20000).header.width == 20000


@pytest.mark.parametrize("kw", [dict(scale=3), dict(mask_bits=4), dict(z_temperature=9.0),
                                dict(model="Bad Name"), dict(width=0), dict(lr_step=0),
                                dict(lr_step=17), dict(lr_space="lab")])
def test_pack_refuses_invalid_headers(kw):
    with pytest.raises(RscError):
        pack(_header(**kw), b"\x00a", b"\x00b")


def test_errors_are_value_errors():
    assert issubclass(RscError, ValueError)
    for cls in (NotRscError, TruncatedError, CorruptError, LimitError, UnsupportedVersionError):
        assert issubclass(cls, RscError)


def test_looks_like_rsc():
    assert container.looks_like_rsc(_file())
    assert not container.looks_like_rsc(b"\x89PNG")


def test_planes_codec_is_newer_than_version_3():
    # codec id 4 came with version 4 (spec at the top of container.py)
    data = pack(_header(), b"\x04lr", b"\x00mask", legacy=True)
    assert unpack(data).sections[1] == b"\x04lr"
    with pytest.raises(CorruptError, match="codec id 4 before version 4"):
        unpack(as_version(data, 3))


def test_read_checks_the_magic_and_the_size_before_it_reads_the_rest():
    """A reader of a path or a stream read it all first: a 1 GB file of
    another kind took 1.3 GB, and /dev/zero never ended."""
    data = _file()
    other = Stream(b"\x89PNG\r\n\x1a\n", 1 << 26)
    with pytest.raises(NotRscError):
        container.read(other)
    assert other.read_to <= container.HEAD_BYTES
    big = Stream(data, len(data))
    with pytest.raises(LimitError, match="max-pixels"):
        container.read(big, max_pixels=33 * 17 - 1)
    assert big.read_to <= container.HEAD_BYTES
    endless = Stream(data, 1 << 26)   # a file followed by more than a 33x17 file can hold
    with pytest.raises(CorruptError, match="more than a file of 33x17 pixels takes"):
        container.read(endless)
    assert endless.read_to <= 33 * 17 * container.MAX_BYTES_PER_PIXEL + container.MAX_FILE_OVERHEAD + 1
    for f in (Stream(data, len(data)), io.BytesIO(b"junk" + data)):
        f.seek(len(f.getvalue()) - len(data) if isinstance(f, io.BytesIO) else 0)   # from where it is
        assert container.read(f) == data
    assert container.read(io.BytesIO(data[:10])) == data[:10]   # short: unpack says where it ends


def test_a_model_name_ending_in_a_newline_is_corrupt():
    """settings.NAME_RE used $, which matches before a last newline: the
    name 'bdflow-x4-v1\\n' was read, and shown by info with a blank line."""
    data = bytearray(_file())
    assert data[34] == 12 and data[35:47] == b"bdflow-x4-v1"
    data[34:47] = bytes([13]) + b"bdflow-x4-v1\n"
    with pytest.raises(CorruptError, match="model name"):
        unpack(with_header(bytes(data)))
    with pytest.raises(ValueError, match="model"):
        pack(_header(model="bdflow-x4-v1\n"), b"\x01lr", b"\x00m")


def _x1(**kw):
    return _header(width=40, height=30, scale=1, mask_bits=1, mask_threshold=65535.0, z_seed=0,
                   z_temperature=0.0, lr_codec="avif", **kw)


@pytest.mark.parametrize("bit, value", [(container.FIELD_MASK, struct.pack("<Bff", 3, 10.0, 2.0)),
                                        (container.FIELD_SEED, struct.pack("<I", 77)),
                                        (container.FIELD_TEMPERATURE, struct.pack("<f", 0.5))])
def test_an_x1_file_is_written_with_no_mask_or_z_fields_and_read_with_them(bit, value):
    """An x1 file has no mask and no Z: the writer refuses such fields, and
    the reader takes them (rescodec 0.15-0.27 stored mask options given with
    -s 1), which the decoder ignores."""
    from dataclasses import replace
    data = pack(_x1(), b"\x07\x20item", b"\x02")
    assert data[4] == container.VERSION_X1 and unpack(data).header == _x1()
    old = bytearray(data)
    old[6] |= bit
    old[9:9] = value   # after the 7 fixed bytes and the two one-byte sides
    assert unpack(with_header(bytes(old))).header.scale == 1
    field = {container.FIELD_MASK: {"mask_bits": 3}, container.FIELD_SEED: {"z_seed": 77},
             container.FIELD_TEMPERATURE: {"z_temperature": 0.5}}[bit]
    with pytest.raises(ValueError, match="x1 file has no mask fields"):
        pack(replace(_x1(), **field), b"\x07\x20item", b"\x02")


def test_codec_6_where_codec_7_holds_it_is_corrupt():
    """One file, one encoding: from version 7 the writer stores codec id 7
    wherever it stands for the codec id 6 payload."""
    h = _header(lr_codec="avif")
    short = b"\x07\x20item"
    assert unpack(pack(h, short, b"\x02")).sections[1] == short
    with pytest.raises(CorruptError, match="codec id 6 where codec id 7 holds it"):
        unpack(pack(h, container.long_av1(short), b"\x02"))
    other = bytes([container.AV1, 0x81, 0x20, 0, 0]) + bytes.fromhex("00010001000180") + b"item"   # BT.709
    assert container.short_av1(other) is None and unpack(pack(h, other, b"\x02")).sections[1] == other


def test_a_one_byte_section_of_codec_id_6_is_corrupt():
    """short_av1 read past a payload of the codec id alone: an internal error
    (IndexError) in info, decode and the Pillow plugin."""
    h = _header(lr_codec="avif")
    unpack(pack(h, b"\x06", b"\x02"))   # the framing is right; the payload is the decoder's to refuse
    with pytest.raises(CorruptError, match="short AV1 payload"):
        from rescodec import codec
        codec.lr_image(b"\x06", h)


@pytest.mark.parametrize("kind, codec", [(container.SECTION_LR, 8), (container.SECTION_LR, 200),
                                         (container.SECTION_MASK, 3), (container.SECTION_MASK, 7),
                                         (container.SECTION_ALPHA, 4), (container.SECTION_ALPHA, 9),
                                         (container.SECTION_METADATA, 1)])
def test_a_codec_id_the_spec_does_not_list_is_corrupt(kind, codec):
    """unpack took any codec id newer versions did not claim: info, the
    header checks and Image.open passed such a file, and only the section's
    decoder failed."""
    sections = {container.SECTION_LR: b"\x01lr", container.SECTION_MASK: b"\x00mask", container.SECTION_ALPHA: b"\x02alpha",
                container.SECTION_METADATA: container.pack_metadata({"xmp": b"x"})}
    sections[kind] = bytes([codec]) + b"payload"
    data = pack(_header(mode="RGBA", has_metadata=True), sections[1], sections[2], sections[3], metadata=sections[4])
    name = container.SECTION_NAMES[kind]
    with pytest.raises(CorruptError, match=f"{name} section: unknown codec id {codec}"):
        unpack(data)

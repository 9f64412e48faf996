import numpy as np
import pytest

from rescodec import mask_coding
from rescodec.errors import CorruptError
from rescodec.mask import MaskParams, lr_mask


@pytest.mark.parametrize("bits", [1, 2, 3])
@pytest.mark.parametrize("coder", [mask_coding._encode_bitplanes, mask_coding._encode_context])
def test_coders_round_trip(photo, bits, coder):
    lv = lr_mask(photo, 2, MaskParams(bits=bits))
    cid = mask_coding.BITPLANES if coder is mask_coding._encode_bitplanes else mask_coding.CONTEXT
    payload = bytes([cid]) + coder(lv, bits)
    assert np.array_equal(mask_coding.decode(payload, lv.shape, bits), lv)


def test_sparse_masks_cost_little():
    lv = np.zeros((128, 128), np.uint8)
    lv[40, 10:100] = 1
    assert len(mask_coding.encode(lv, 1)) < 64          # 2 KB of raw bits


def test_encoder_keeps_the_smaller(photo):
    lv = lr_mask(photo, 4)
    a = 1 + len(mask_coding._encode_bitplanes(lv, 1))
    b = 1 + len(mask_coding._encode_context(lv, 1))
    assert len(mask_coding.encode(lv, 1)) == min(a, b)


def test_an_empty_mask_is_one_byte():
    payload = mask_coding.encode(np.zeros((30, 40), np.uint8), 2)
    assert payload == bytes([mask_coding.EMPTY])
    assert not mask_coding.decode(payload, (30, 40), 2).any()


def test_empty_masks_need_version_6(photo):
    """A version 5 file cannot hold the empty-mask codec id (older readers do not know it)."""
    import rescodec
    from rescodec import container
    from conftest import as_legacy, with_header
    data = as_legacy(rescodec.encode(photo[:64, :64], scale=4, lr_codec="lossless", threshold=65535.0))
    assert data[4] == 6 and container.unpack(data).sections[container.SECTION_MASK] == b"\x02"
    with pytest.raises(CorruptError, match="mask section: codec id 2 before version 6"):
        container.unpack(with_header(data, version=5))


@pytest.mark.parametrize("payload", [b"\x00garbage", b"\x01" + bytes(7), b"\x05abc", b"\x02\x00"])
def test_damaged_payloads(payload):
    with pytest.raises(CorruptError):
        mask_coding.decode(payload, (16, 16), 1)


def test_out_of_range_levels_rejected():
    lv = np.full((4, 4), 3, np.uint8)
    payload = bytes([0]) + mask_coding._encode_bitplanes(lv, 2)
    with pytest.raises(CorruptError):
        mask_coding.decode(payload, (4, 4), 1)


@pytest.mark.parametrize("bits", [1, 3])
def test_payloads_are_what_the_container_spec_says(photo, bits):
    """container.py's spec of mask codec ids 0 and 1, read without mask_coding."""
    import zstandard
    lv = lr_mask(photo, 2, MaskParams(bits=bits))
    h, w = lv.shape
    raw = zstandard.ZstdDecompressor().decompress(mask_coding._encode_bitplanes(lv, bits))
    assert len(raw) == (h * w * bits + 7) // 8
    flat = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:h * w * bits]
    planes = flat.reshape(bits, h * w)            # plane 0 first: bit b of every level
    assert np.array_equal(sum(planes[b].astype(np.uint8) << b for b in range(bits)).reshape(h, w), lv)
    table = np.frombuffer(mask_coding._encode_context(lv, bits)[:27 * 2 ** bits * 2], "<u2")
    assert (table >= 1).all()
    up = np.vstack([np.zeros((1, w), np.uint8), lv[:-1]]).astype(int)
    q = np.minimum(np.pad(up, ((0, 0), (1, 1))), 2)
    ctx = 9 * q[:, :-2] + 3 * q[:, 1:-1] + q[:, 2:]   # up-left, up, up-right
    seen = np.zeros((27, 2 ** bits), bool)
    seen[ctx.ravel(), lv.ravel()] = True
    assert np.array_equal(table.reshape(27, -1) > 1, seen)   # +1 on each count: > 1 where seen


def test_range_coded_data_must_be_exactly_the_coders_output(photo):
    """The range coder reads missing words as zeros and leaves extra ones
    unread: a payload cut short, with no words at all, or with words after
    the coder's decoded to a wrong mask, or to the same one from other bytes."""
    lv = lr_mask(photo, 2, MaskParams(bits=2))
    payload = bytes([mask_coding.CONTEXT]) + mask_coding._encode_context(lv, 2)
    table = 1 + mask_coding.N_CONTEXTS * 4 * 2
    assert len(payload) > table + 4
    for bad in (payload[:-4], payload[:table], payload + bytes(4), payload + bytes(range(16))):
        with pytest.raises(CorruptError, match="mask section"):
            mask_coding.decode(bad, lv.shape, 2)


def test_bit_plane_padding_must_be_zero():
    import zstandard
    lv = np.eye(3, dtype=np.uint8)            # 9 bits: 7 of padding in the second byte
    raw = zstandard.ZstdDecompressor().decompress(mask_coding._encode_bitplanes(lv, 1))
    assert len(raw) == 2 and raw[1] == 1
    padded = bytes([raw[0], raw[1] | 0x80])
    assert np.array_equal(mask_coding.decode(b"\x00" + zstandard.ZstdCompressor().compress(raw), (3, 3), 1), lv)
    with pytest.raises(CorruptError, match="padding bits"):
        mask_coding.decode(b"\x00" + zstandard.ZstdCompressor().compress(padded), (3, 3), 1)


def test_the_context_coders_numbers_are_little_endian(photo):
    """The spec's integers are little-endian on any machine: the table's u16
    counts and the coder's u32 words, read here without mask_coding."""
    import constriction
    lv = lr_mask(photo, 2, MaskParams(bits=1))
    data = mask_coding._encode_context(lv, 1)
    table = np.array([int.from_bytes(data[i:i + 2], "little") for i in range(0, 108, 2)]).reshape(27, 2)
    words = np.array([int.from_bytes(data[i:i + 4], "little") for i in range(108, len(data), 4)], np.uint32)
    probs = (table / table.sum(1, keepdims=True)).astype(np.float32)
    dec = constriction.stream.queue.RangeDecoder(words)
    prev = np.zeros(lv.shape[1], np.uint8)
    for y in range(lv.shape[0]):
        row = dec.decode(constriction.stream.model.Categorical(perfect=False), probs[mask_coding._contexts(prev)])
        assert np.array_equal(row, lv[y])
        prev = lv[y]

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

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


@pytest.mark.parametrize("payload", [b"\x00garbage", b"\x01" + bytes(7), b"\x05abc"])
def test_damaged_payloads(payload):
    with pytest.raises(CorruptError):
        mask_coding.decode(payload, (16, 16), 1)


def test_out_of_range_levels_rejected():
    lv = np.full((4, 4), 3, np.uint8)
    payload = bytes([0]) + mask_coding._encode_bitplanes(lv, 2)
    with pytest.raises(CorruptError):
        mask_coding.decode(payload, (4, 4), 1)

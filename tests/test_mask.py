import numpy as np
import pytest

from rescodec.mask import (MaskParams, boundary_strength, level_values, lr_mask, quantize,
                           to_lr)

from conftest import gradient_image


def _step_image(h=64, w=64, blur=True):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = 200
    if blur:   # a soft edge several pixels wide, which NMS must thin
        import cv2
        img = cv2.GaussianBlur(img, (0, 0), 2.0)
    return img


def test_nms_thins_a_wide_edge():
    s = boundary_strength(_step_image())
    rows = (s[8:-8] > 0).sum(axis=1)
    assert rows.min() >= 1 and rows.max() <= 2   # a 1-2 pixel line per row, not a band


def test_flat_image_has_no_boundary():
    assert boundary_strength(np.full((32, 32, 3), 128, np.uint8)).max() == 0


def test_mask_is_sparse_on_a_photo(photo):
    s = boundary_strength(photo)
    assert 0 < (s > 0).mean() < 0.25


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_levels_use_the_bits(photo, bits):
    lv = quantize(boundary_strength(photo, MaskParams(bits=bits)), MaskParams(bits=bits))
    assert lv.dtype == np.uint8 and lv.max() <= (1 << bits) - 1
    if bits > 1:
        assert len(np.unique(lv)) > 2


def test_quantize_is_monotone():
    p = MaskParams(bits=3, threshold=50)
    s = np.array([[0, 49, 50, 100, 200, 400, 799, 5000]], np.float32)
    lv = quantize(s, p)[0]
    assert lv[0] == lv[1] == 0 and lv[2] == 1 and lv[-1] == 7
    assert (np.diff(lv.astype(int)) >= 0).all()


def test_higher_threshold_means_fewer_boundaries(photo):
    lo = boundary_strength(photo, MaskParams(threshold=20))
    hi = boundary_strength(photo, MaskParams(threshold=100))
    assert (hi > 0).sum() < (lo > 0).sum()


def test_to_lr_keeps_thin_edges():
    lv = np.zeros((8, 8), np.uint8)
    lv[3, 5] = 2
    out = to_lr(lv, 4)
    assert out.shape == (2, 2) and out[0, 1] == 2 and out.sum() == 2


def test_level_values_range():
    v = level_values(np.array([0, 1, 7], np.uint8), 3)
    assert v[0] == 0 and v[-1] == 1


def test_lr_mask_shape():
    img = gradient_image(64, 48)
    assert lr_mask(img, 16).shape == (4, 3)


@pytest.mark.parametrize("kw", [dict(bits=4), dict(norm=3), dict(threshold=0), dict(sigma=-1)])
def test_bad_params(kw):
    with pytest.raises(ValueError):
        MaskParams(**kw).validate()

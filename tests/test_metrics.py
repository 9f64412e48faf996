import numpy as np
import pytest

from rescodec.evaluation.baselines import jpeg_at_bpp
from rescodec.evaluation.baselines import bicubic_rescale
from rescodec.evaluation.metrics import psnr, psnr_y, ssim


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a + 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2))
    assert psnr(a, a) == float("inf")


def test_psnr_y_ignores_chroma_only_changes_less():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[..., 2] += 10
    assert psnr_y(a, b) > psnr(a, b)


def test_ssim_identity(photo):
    assert ssim(photo, photo) == pytest.approx(1.0)
    assert ssim(photo, photo // 2) < 0.9


def test_bicubic_baseline_shapes(photo):
    lr, up = bicubic_rescale(photo, 4)
    assert lr.shape == (48, 64, 3) and up.shape == photo.shape


def test_jpeg_at_bpp_brackets(photo):
    lo = jpeg_at_bpp(photo, 0.5)["psnr"]
    hi = jpeg_at_bpp(photo, 2.0)["psnr"]
    assert hi > lo
    assert jpeg_at_bpp(photo, 1e-4)["clamped"] == "below quality 1"

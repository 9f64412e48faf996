"""Quality metrics: PSNR, Y-PSNR, SSIM and Bjøntegaard deltas.

PSNR is on RGB over the whole image with no border crop (what a user sees);
Y-PSNR uses the BT.601 luma the rescaling papers report.  SSIM comes from
scikit-image rather than hand-written code.
"""
from __future__ import annotations

import numpy as np


def _as_float(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a if a.ndim == 3 else a[..., None]


def psnr(ref, test, peak: float = 255.0) -> float:
    ref, test = _as_float(ref), _as_float(test)
    if ref.shape != test.shape:
        raise ValueError(f"shape mismatch {ref.shape} vs {test.shape}")
    mse = np.mean((ref - test) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def y_channel(rgb) -> np.ndarray:
    """BT.601 studio-swing luma (16..235), as in IRN / MATLAB rgb2ycbcr."""
    a = _as_float(rgb)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def psnr_y(ref, test) -> float:
    return psnr(y_channel(ref), y_channel(test))


def ssim(ref, test) -> float:
    from skimage.metrics import structural_similarity
    ref, test = np.asarray(ref), np.asarray(test)
    if ref.ndim == 3 and ref.shape[-1] == 1:
        ref, test = ref[..., 0], test[..., 0]
    small = min(ref.shape[:2])
    win = min(7, small if small % 2 else small - 1)
    if win < 3:
        return float("nan")
    return float(structural_similarity(ref, test, data_range=255, win_size=win,
                                       channel_axis=-1 if ref.ndim == 3 else None))


def _envelope(rate, quality):
    """The points no other point beats (a rate as low and a higher PSNR), by rate.
    A curve that dips (a higher rate at a lower PSNR, as a rate-trained model
    can on one image) would make log-rate a non-function of PSNR and the fit
    explode; nobody would pick a dominated point anyway."""
    order = np.lexsort((-np.asarray(quality, float), np.asarray(rate, float)))   # by rate, the best first at a tie
    keep, best = [], -np.inf
    for k in order:
        if quality[k] > best:
            keep.append(k)
            best = quality[k]
    return np.asarray(rate, float)[keep], np.asarray(quality, float)[keep]


def _bd_mean(x, y, lo, hi) -> float:
    """Mean over [lo, hi] of the monotone piecewise-cubic (PCHIP) curve through
    (x, y), x increasing: Bjontegaard's average (VCEG-M33) with the piecewise
    interpolation later BD tools use, which cannot overshoot between points."""
    if len(x) == 2:
        return float(np.mean(np.interp([lo, hi], x, y)))
    from scipy.interpolate import PchipInterpolator
    return float(PchipInterpolator(x, y).integrate(lo, hi) / (hi - lo))


def bd_psnr(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average PSNR gain (dB) of test over ref across their common log-rate
    range; nan when the ranges do not overlap."""
    r1, p1 = _envelope(rate_ref, psnr_ref)
    r2, p2 = _envelope(rate_test, psnr_test)
    lr1, lr2 = np.log(r1), np.log(r2)
    lo, hi = max(lr1.min(), lr2.min()), min(lr1.max(), lr2.max())
    if hi <= lo:
        return float("nan")
    return _bd_mean(lr2, p2, lo, hi) - _bd_mean(lr1, p1, lo, hi)


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float:
    """Average bitrate change (%) of test against ref at equal PSNR; negative =
    smaller; nan when the PSNR ranges do not overlap."""
    r1, p1 = _envelope(rate_ref, psnr_ref)
    r2, p2 = _envelope(rate_test, psnr_test)
    lo, hi = max(p1.min(), p2.min()), min(p1.max(), p2.max())
    if hi <= lo:
        return float("nan")
    d = _bd_mean(p2, np.log(r2), lo, hi) - _bd_mean(p1, np.log(r1), lo, hi)
    return float((np.exp(d) - 1) * 100)

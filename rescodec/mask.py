"""Boundary-aware Mask, BDFlow Algorithm 1, and its trip to LR resolution.

    I -> GaussBlur(sigma) -> Sobel Gx, Gy -> |G| (L1 or L2) -> NMS -> >= T -> quantise

Choices the paper leaves open (measured or argued in CHANGELOG.md, 0.1.0):
- Gradients are OpenCV Sobel 3x3 on the blurred luma in 0..255, the scale Canny
  thresholds use, so T = 50 (Table 4) means what it does for Canny.
- Quantisation: 0 = no boundary; levels 1..2^bits-1 split log2(M / T) evenly
  over [T, 16 T), so each bit more halves the bin width in octaves.
- LR resolution: the HR level map is max-pooled over each s x s block, so a
  one-pixel-wide edge survives the downscale (a mean would dilute it to ~1/s).
- Values of B: level q becomes q / (2^bits - 1), in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_BITS = 3
OCTAVES = 4.0          # quantiser spans [T, 2^4 T)


@dataclass(frozen=True)
class MaskParams:
    bits: int = 1           # Table 4: 1, 2 or 3 bits
    threshold: float = 50.0  # T on the 0..255 Sobel scale (Table 4)
    norm: int = 2            # 1 or 2: magnitude norm (Table 4 prefers L2)
    sigma: float = 1.0       # Gaussian blur before the gradient

    def validate(self) -> None:
        if self.bits not in range(1, MAX_BITS + 1):
            raise ValueError(f"unsupported mask bits {self.bits}; choose from 1, 2, 3")
        if self.norm not in (1, 2):
            raise ValueError(f"unsupported mask norm {self.norm}; choose from 1, 2")
        if not (0 < self.threshold < 65536):
            raise ValueError(f"mask threshold must be in (0, 65536), got {self.threshold}")
        if not (0 <= self.sigma < 64):
            raise ValueError(f"mask sigma must be in [0, 64), got {self.sigma}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 (any float/uint range 0..255) -> HxW float32 BT.601 luma."""
    rgb = rgb.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _non_max_suppress(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep pixels that are maxima across the edge (4 direction bins, as Canny)."""
    h, w = mag.shape
    p = np.pad(mag, 1, mode="constant")
    angle = (np.degrees(np.arctan2(gy, gx)) + 180.0) % 180.0
    d = np.zeros(mag.shape, np.uint8)                 # 0: horizontal gradient
    d[(angle >= 22.5) & (angle < 67.5)] = 1           # 45 degrees
    d[(angle >= 67.5) & (angle < 112.5)] = 2          # vertical gradient
    d[(angle >= 112.5) & (angle < 157.5)] = 3         # 135 degrees
    offsets = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = np.zeros(mag.shape, bool)
    for k, ((dy1, dx1), (dy2, dx2)) in enumerate(offsets):
        n1 = p[1 + dy1:1 + dy1 + h, 1 + dx1:1 + dx1 + w]
        n2 = p[1 + dy2:1 + dy2 + h, 1 + dx2:1 + dx2 + w]
        keep |= (d == k) & (mag >= n1) & (mag >= n2)
    return np.where(keep, mag, 0.0).astype(np.float32)


def boundary_strength(rgb: np.ndarray, params: MaskParams = MaskParams()) -> np.ndarray:
    """Algorithm 1 lines 1-5: B_s, the thinned, thresholded magnitude (HxW float32).

    B_s also feeds the Boundary-aware Weight of Eq. 4 during training.
    """
    y = luma(rgb)
    if params.sigma > 0:
        y = cv2.GaussianBlur(y, (0, 0), params.sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    mag = np.abs(gx) + np.abs(gy) if params.norm == 1 else np.sqrt(gx * gx + gy * gy)
    thin = _non_max_suppress(mag, gx, gy)
    thin[thin < params.threshold] = 0.0
    return thin


def quantize(strength: np.ndarray, params: MaskParams) -> np.ndarray:
    """Algorithm 1 line 6: B_s -> levels 0..2^bits-1 (uint8)."""
    top = (1 << params.bits) - 1
    levels = np.zeros(strength.shape, np.uint8)
    on = strength >= params.threshold
    octave = np.log2(strength[on] / params.threshold)
    levels[on] = np.clip(1 + np.floor(octave * top / OCTAVES), 1, top).astype(np.uint8)
    return levels


def to_lr(levels: np.ndarray, scale: int) -> np.ndarray:
    """Max-pool an HR level map (H, W multiples of scale) to LR resolution."""
    h, w = levels.shape
    return levels.reshape(h // scale, scale, w // scale, scale).max(axis=(1, 3))


def level_values(levels: np.ndarray, bits: int) -> np.ndarray:
    """Mask levels -> the values of B the flow is trained on and decoded with."""
    return levels.astype(np.float32) / ((1 << bits) - 1)


# |gx| + |gy| of the 3x3 Sobel on the 0..255 scale is at most 2 * 4 * 255: a
# threshold above it marks nothing, whatever the image (the empty mask of x1)
MAX_STRENGTH = 2 * 4 * 255


def lr_mask(rgb: np.ndarray, scale: int, params: MaskParams = MaskParams()) -> np.ndarray:
    """The LR level map that the container stores (uint8, H/s x W/s)."""
    if params.threshold > MAX_STRENGTH:
        return np.zeros((rgb.shape[0] // scale, rgb.shape[1] // scale), np.uint8)
    return to_lr(quantize(boundary_strength(rgb, params), params), scale)

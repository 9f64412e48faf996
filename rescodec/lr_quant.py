"""The LR quantiser: the LR step's grid, the YCbCr colour space of the codes,
and the differentiable rate proxy that training and refinement price them with.

The encoder rounds the flow's Y to the grid k * step / 255 (in RGB or in
BT.601 YCbCr), the container stores the codes k, and the decoder maps them
back (`lr_from_codes`).  `lr_grid` is that rounding with a straight-through
gradient, so training and refinement see exactly what the decoder reads.
"""
from __future__ import annotations

import numpy as np
import torch


# "ycc": the codes are BT.601 full-range (JFIF) YCbCr on the 0..255 scale,
# each on the step's grid.  At x2 step 8 it stores 27 % fewer bytes than RGB
# codes for 1.7 dB less, a better trade than a coarser RGB step (CHANGELOG.md,
# 0.1.0, "YCbCr LR codes").  The inverse is the matrix's float inverse, so every decoder
# computes the same LR.
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                    dtype=torch.float64)
_RGB_OF_YCC = torch.linalg.inv(_YCC).float()
_YCC = _YCC.float()
_YCC_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float32).view(1, 3, 1, 1)


def _mix(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The 3x3 colour matrix on (N, 3, H, W), as per-element sums in a fixed
    order: a matrix product's reduction order depends on the thread count, and
    the decoder must give the same pixels at any (BENCHMARKS.md, "Bit-exact decoding")."""
    c = [v[:, j:j + 1] for j in range(3)]
    return torch.cat([m[i, 0] * c[0] + m[i, 1] * c[1] + m[i, 2] * c[2] for i in range(3)], dim=1)


def _ycc(y: torch.Tensor) -> torch.Tensor:
    """y in [0, 1] (clamped) -> YCbCr on the 0..255 scale."""
    return _mix(_YCC, y.clamp(0, 1) * 255) + _YCC_OFFSET.to(y.device)


def _codes(y: torch.Tensor, step: int, space: str) -> torch.Tensor:
    """The nearest grid point's k per channel, as floats."""
    if space == "rgb":
        return _grid_index(y, step)
    return torch.round(_ycc(y) / step).clamp(0, round(255 / step))


def _values(k: torch.Tensor, step: int, space: str) -> torch.Tensor:
    """Codes k -> the LR in [0, 1] that the flow inverts."""
    if space == "rgb":
        return k * (step / 255)
    return (_mix(_RGB_OF_YCC, k * step - _YCC_OFFSET.to(k.device)).clamp(0, 255)) / 255


def lr_grid(y: torch.Tensor, step: int = 1, space: str = "rgb") -> torch.Tensor:
    """The LR as stored: y in [0, 1] rounded to the grid k * step / 255,
    k = 0 .. floor(255 / step), with a straight-through gradient (training
    and refinement see exactly the encoder's rounding).  Step 1 is the plain
    8-bit LR; a coarser step stores fewer levels (CHANGELOG.md, 0.1.0, "LR step").
    space "ycc": the grid is on YCbCr codes, and the result their RGB."""
    q = _values(_codes(y.detach(), step, space), step, space)
    return y + (q - y).detach()


def lr_codes(y: torch.Tensor, step: int = 1, space: str = "rgb") -> np.ndarray:
    """(1, 3, h, w) floats -> (h, w, 3) uint8 codes k, what the LR section stores."""
    return _codes(y.detach(), step, space)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def _grid_index(y: torch.Tensor, step: int) -> torch.Tensor:
    """The nearest grid point's k for y in [0, 1] (clamped), as floats."""
    return torch.round(y.clamp(0, 1) * (255 / step)).clamp(max=255 // step)


def lr_from_codes(codes: np.ndarray, step: int = 1, space: str = "rgb") -> np.ndarray:
    """Stored codes -> the LR the flow inverts: uint8 for "rgb" (codes above
    the grid cannot come from our encoder; they saturate at 255 rather than
    wrap), float32 on the 0..255 scale for "ycc"."""
    if space == "ycc":
        k = torch.from_numpy(codes.astype(np.float32)).permute(2, 0, 1)[None]
        return (_values(k, step, space) * 255)[0].permute(1, 2, 0).contiguous().numpy()
    if step == 1:
        return codes
    return np.minimum(codes.astype(np.int32) * step, 255).astype(np.uint8)


def rate_proxy(y: torch.Tensor, step: int = 1, space: str = "rgb") -> torch.Tensor:
    """Differentiable stand-in for the lossless LR's bits per sample.

    Residual of the gradient predictor a + b - c (left, top, top-left), on
    (R-G, G, B-G) at the 0..255 scale, as log2(1 + |r|).  On 114 LR images
    (val set, x2/x4/x8, flow and bicubic) it correlates 0.977 with lossless
    JPEG XL bits per sample, bits ~ 1.49 * proxy + 0.88 (CHANGELOG.md,
    0.2.0, "benchmark rate-proxy").  With an LR step the coder sees the codes,
    y * 255 / step; space "ycc": the YCbCr codes, already decorrelated."""
    if space == "ycc":
        d = _ycc(y) / step
    else:
        v = y * (255 / step)
        g = v[:, 1:2]
        d = torch.cat([v[:, 0:1] - g, g, v[:, 2:3] - g], dim=1)
    r = d[..., 1:, 1:] - (d[..., 1:, :-1] + d[..., :-1, 1:] - d[..., :-1, :-1])
    return torch.log2(1 + torch.sqrt(r * r + 1e-6)).mean()

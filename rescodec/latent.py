"""The decoder's input [Y | B | Z]: where Z is sampled and B is made from the mask.

B is the boundary channel, the mask levels as values (BDFlow Eq. 10's target);
Z the Gaussian rest of the latent (Eq. 11), drawn at decode time from the
seed and temperature stored in the file, N(0, (t * z_std)^2) with the model's
z_std (flow.FlowConfig).  Decode, refinement and training
validation all build the inverse's input here.
"""
from __future__ import annotations

import numpy as np
import torch

from .mask import level_values


def sample_z(seed: int, temperature: float, shape) -> torch.Tensor:
    """Z ~ N(0, t^2): numpy's PCG64 stream, so it is the same on every platform."""
    if temperature == 0:
        return torch.zeros(shape, dtype=torch.float32)
    z = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return torch.from_numpy(z * np.float32(temperature))


def b_values(levels: np.ndarray, bits: int, b_scale: float) -> np.ndarray:
    """Mask levels -> the values of B the flow was trained on (float32)."""
    return level_values(levels, bits) * b_scale


class DecoderInput:
    """[Y | B | Z] over any LR window, for one image: B from the mask levels,
    Z from (seed, temperature) as one stream for the whole image, so that
    tiling cannot change the draw."""

    def __init__(self, net, levels: np.ndarray, bits: int, seed: int, temperature: float):
        self.b = torch.from_numpy(b_values(levels, bits, net.config.b_scale))[None, None]
        shape = (1, net.latent_channels - 4) + tuple(levels.shape)
        # t in the file's units: t = 1 is the spread of the model's forward Z
        self.z = sample_z(seed, float(temperature) * net.config.z_std, shape) if temperature else None
        self.z_channels = shape[1]

    def __call__(self, y: torch.Tensor, rows: slice = slice(None), cols: slice = slice(None)
                 ) -> torch.Tensor:
        """Y of the window (rows, cols) of the LR -> the inverse's input there."""
        b = self.b[..., rows, cols]
        z = (torch.zeros(1, self.z_channels, *b.shape[-2:], dtype=y.dtype) if self.z is None
             else self.z[..., rows, cols])
        return torch.cat([y, b.to(y.device), z.to(y.device)], dim=1)

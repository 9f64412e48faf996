"""The invertible rescaling flow: Haar wavelet + invertible blocks per level.

Follows BDFlow (../shared/papers/bdflow-*.md, Sec. 3.1-3.2, Eq. 5-6) in the
multi-level layout of IRN: each level halves the resolution with a Haar
transform and mixes the result with coupling blocks.

    x (3, H, W)
      |  level 1: Haar -> [A | H V D]  (3 | 9 channels at H/2)
      |           InvBlock x n   u1 = first 3 channels, u2 = the rest
      |  level 2: Haar on all 12 -> 48 channels at H/4, InvBlock x n
      |  ...
      v
    [ Y (3) | B (1) | Z (3*4^L - 4) ]   at H/s, s = 2^L

Y is the LR image, B the boundary channel (trained towards the mask, Eq. 10),
Z the Gaussian rest (Eq. 11).  `inverse` runs the same blocks backwards.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .restore import RestorationHead
from .settings import SCALES


@dataclass
class FlowConfig:
    scale: int = 4              # 2, 4, 8 or 16: one Haar level per factor 2; 1: no level, the
                                # "LR" is the photo and only the restoration head is learnt
    blocks_per_level: int = 2   # BDFlow Sec. 4.2 uses two InvBlocks per level
    width: int = 32             # subnet hidden channels; measured for speed on 2 CPU cores
    clamp: float = 1.0          # |log scale| bound of the affine term, keeps the inverse stable
    channels: int = 3           # image channels (RGB)
    b_scale: float = 1.0        # value of B for the top mask level (B = level / max * b_scale)
    res_blocks: int = 1         # residual blocks per subnet (IRRM's deeper "enhanced" subnets)
    # Subnet width at levels 3 and 4 (0: `width`).  There the coupling's eta
    # emits 2 * 189 or 2 * 765 channels from a 3x3 conv over `width` features,
    # at most 9 * width = 288 independent outputs per pixel at width 32; the
    # levels are 1/64 and 1/256 of the pixels, so widening them is cheap.
    deep_width: int = 0         # subnet width at levels 3 and 4 (0: width), cheap there
    # Width of the latent prior (0: none), a coupling after the last level:
    # Z' = Z - g(Y, B).  The decoder sets Z' = 0, so Z = g(Y, B), a prediction
    # of the latent from the LR by a deeper net than the blocks' subnets, run
    # at LR resolution only.  Not in BDFlow; CHANGELOG.md, 0.1.0, "latent prior".
    prior_width: int = 0        # latent prior's width (0: none): Z predicted from Y and B
    prior_blocks: int = 2       # residual blocks of g
    # Z's spread at temperature 1: the decoder draws Z ~ N(0, (t * z_std)^2).
    # Eq. 11 keeps the forward's Z near 0 (RMS ~0.006 in the AVIF models), and
    # the bounded couplings (gain >= e^-clamp per block) cannot shrink a unit
    # Gaussian to that, so t = 1 means "as spread as the forward's Z on
    # training patches" (README "Texture and temperature"); models that predate
    # the field read as 1.0.
    z_std: float = 1.0          # Z's RMS at t = 1; 0: measured when training starts (with --init-from); default: the --init-from model's
    # A decoder-only restoration head after the inverse (restore.py; not in
    # BDFlow).  Trained after the flow, on its decoded output (training/head.py).
    head_width: int = 0         # restoration head's width (0: none)
    head_blocks: int = 4        # restoration head's residual blocks
    head_dilated: int = 0       # of them, the last ones with dilated convolutions (restore.py)
    head_dilation: int = 1      # those blocks' dilation

    @property
    def levels(self) -> int:
        return int(math.log2(self.scale))

    def width_at(self, level: int) -> int:
        """Subnet width of 0-based `level`."""
        return self.deep_width if level >= 2 and self.deep_width else self.width

    def validate(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unsupported scale {self.scale}; choose from 1, 2, 4, 8, 16")
        if self.scale == 1 and self.prior_width:
            raise ValueError("an x1 model has no latent, so no latent prior")
        if (self.blocks_per_level < 1 or self.width < 1 or self.clamp <= 0 or self.res_blocks < 1
                or self.deep_width < 0 or self.prior_width < 0 or self.prior_blocks < 1
                or not self.z_std >= 0 or self.head_width < 0 or self.head_blocks < 1
                or not 0 <= self.head_dilated <= self.head_blocks or self.head_dilation < 1):
            raise ValueError(f"invalid flow config {asdict(self)}")


def haar_forward(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2) ordered [A, H, V, D] by sub-band.

    A is the 2x2 mean, so Y stays in image range; /4 and *4 are exact in floats.
    """
    n, c, h, w = x.shape
    p = x.reshape(n, c, h // 2, 2, w // 2, 2)
    p00, p01 = p[:, :, :, 0, :, 0], p[:, :, :, 0, :, 1]
    p10, p11 = p[:, :, :, 1, :, 0], p[:, :, :, 1, :, 1]
    a = (p00 + p01 + p10 + p11) / 4
    hh = (p00 - p01 + p10 - p11) / 4
    vv = (p00 + p01 - p10 - p11) / 4
    dd = (p00 - p01 - p10 + p11) / 4
    return torch.cat([a, hh, vv, dd], dim=1)


def haar_inverse(y: torch.Tensor) -> torch.Tensor:
    n, c4, h, w = y.shape
    a, hh, vv, dd = y.chunk(4, dim=1)
    p00 = a + hh + vv + dd
    p01 = a - hh + vv - dd
    p10 = a + hh - vv - dd
    p11 = a - hh - vv + dd
    top = torch.stack([p00, p01], dim=-1)      # (n, c, h, w, 2)
    bot = torch.stack([p10, p11], dim=-1)
    p = torch.stack([top, bot], dim=3)         # (n, c, h, 2, w, 2)
    return p.reshape(n, c4 // 4, h * 2, w * 2)


class Subnet(nn.Module):
    """conv -> residual block(s) -> conv.  The last conv starts at zero so that
    an untrained flow is exactly the Haar transform (fast, stable start)."""

    def __init__(self, cin: int, cout: int, width: int, res_blocks: int = 1):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, width, 3, padding=1)
        self.res1 = nn.Conv2d(width, width, 3, padding=1)
        self.res2 = nn.Conv2d(width, width, 3, padding=1)
        # residual blocks after the first (IRRM's deeper subnets); res1/res2 are the first
        self.more = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                          nn.Conv2d(width, width, 3, padding=1))
            for _ in range(res_blocks - 1))
        self.conv_out = nn.Conv2d(width, cout, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x):
        h = F.leaky_relu(self.conv_in(x), 0.2)
        h = h + self.res2(F.leaky_relu(self.res1(h), 0.2))
        for block in self.more:
            h = h + block(F.leaky_relu(h, 0.2))
        return self.conv_out(F.leaky_relu(h, 0.2))


class InvBlock(nn.Module):
    """Coupling block, Eq. 6 in IRN's bounded form:
        u1' = u1 + phi(u2)
        u2' = u2 * exp(s(u1')) + eta(u1'),   s = clamp * (2 sigmoid(rho(u1')) - 1)
    The scale is bounded by exp(+-clamp), so the inverse never divides by ~0.
    """

    def __init__(self, c1: int, c2: int, width: int, clamp: float, res_blocks: int = 1):
        super().__init__()
        self.c1, self.c2, self.clamp = c1, c2, clamp
        self.phi = Subnet(c2, c1, width, res_blocks)
        self.rho_eta = Subnet(c1, 2 * c2, width, res_blocks)   # rho and eta share one trunk

    def _scale_shift(self, u1):
        rho, eta = self.rho_eta(u1).chunk(2, dim=1)
        return self.clamp * (torch.sigmoid(rho) * 2 - 1), eta

    def forward(self, x):
        u1, u2 = x[:, : self.c1], x[:, self.c1:]
        v1 = u1 + self.phi(u2)
        s, eta = self._scale_shift(v1)
        v2 = u2 * torch.exp(s) + eta
        return torch.cat([v1, v2], dim=1)

    def inverse(self, y):
        v1, v2 = y[:, : self.c1], y[:, self.c1:]
        s, eta = self._scale_shift(v1)
        u2 = (v2 - eta) * torch.exp(-s)
        u1 = v1 - self.phi(u2)
        return torch.cat([u1, u2], dim=1)


class RescaleFlow(nn.Module):
    """BDFlow-style invertible rescaler (see module docstring for the diagram)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        levels = []
        for lvl in range(config.levels):
            ch = c * 4 ** (lvl + 1)
            levels.append(nn.ModuleList(
                InvBlock(c, ch - c, config.width_at(lvl), config.clamp, config.res_blocks)
                for _ in range(config.blocks_per_level)))
        self.levels = nn.ModuleList(levels)
        # additive coupling [Y, B] -> Z: invertible whatever g computes;
        # zero-initialised like every subnet, so it starts as the identity
        self.prior = (Subnet(c + 1, self.latent_channels - c - 1, config.prior_width,
                             config.prior_blocks) if config.prior_width else None)
        # the head works on 2x2 pixel blocks at least: at x1 a full-resolution
        # head would cost 4x as much per pixel for the same width
        self.head = (RestorationHead(max(config.scale, 2), config.head_width, config.head_blocks, c,
                                     config.head_dilated, config.head_dilation)
                     if config.head_width else None)

    @property
    def prior_reach(self) -> int:
        """LR pixels each side that the latent prior reads: one per 3x3 conv."""
        return 2 * self.config.prior_blocks + 2 if self.prior is not None else 0

    @property
    def head_reach(self) -> int:
        """LR pixels each side that the restoration head reads (0: no head)."""
        return self.head.reach if self.head is not None else 0

    @property
    def latent_channels(self) -> int:
        return self.config.channels * self.config.scale ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """HR (N, 3, H, W) with H, W multiples of scale -> (N, 3 s^2, H/s, W/s)."""
        x = self.forward_levels(x)
        if self.prior is not None:
            c = self.config.channels + 1
            x = torch.cat([x[:, :c], x[:, c:] - self.prior(x[:, :c])], dim=1)
        return x

    def forward_levels(self, x: torch.Tensor) -> torch.Tensor:
        """forward() without the latent prior: Y and B are the same, and the
        encoder, which keeps only Y, need not run g."""
        for blocks in self.levels:
            x = haar_forward(x)
            for block in blocks:
                x = block(x)
        return x

    def same_forward_levels(self, other: "RescaleFlow") -> bool:
        """Whether forward_levels gives the same Y and B as other's: the same
        levels' weights (a head or prior trained later changes neither)."""
        if (self.config.scale, self.config.channels) != (other.config.scale, other.config.channels):
            return False
        a, b = self.levels.state_dict(), other.levels.state_dict()
        return a.keys() == b.keys() and all(
            a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse_levels(self.inverse_prior(y))

    def inverse_prior(self, y: torch.Tensor) -> torch.Tensor:
        """The latent prior's coupling undone: [Y | B | Z'] -> [Y | B | Z]."""
        if self.prior is None:
            return y
        c = self.config.channels + 1
        return torch.cat([y[:, :c], y[:, c:] + self.prior(y[:, :c])], dim=1)

    def inverse_levels(self, y: torch.Tensor) -> torch.Tensor:
        """The levels' blocks and Haar transforms undone: [Y | B | Z] -> HR."""
        for blocks in reversed(self.levels):
            for block in reversed(blocks):
                y = block.inverse(y)
            y = haar_inverse(y)
        return y

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's last stage on the inverse's output: the restoration
        head where the model has one (on [0, 1], as the decoder clamps), else x."""
        return self.head(x.clamp(0, 1)) if self.head is not None else x

    @staticmethod
    def split(out: torch.Tensor, channels: int = 3):
        """-> Y (LR image), B (boundary channel), Z (Gaussian rest)."""
        return out[:, :channels], out[:, channels:channels + 1], out[:, channels + 1:]

"""The restoration head: a small CNN the decoder runs after the flow's inverse.

The inverse is the forward's blocks run backwards, so its capacity is tied to
the encoder's, and it reconstructs from an AVIF-decoded LR whose loss it can
only partly undo.  A decoder-only, non-invertible stage after it (as SAIN adds
decoder-side blocks, and HyperThumbnail drops invertibility on the decoder)
removes part of what the lossy LR leaves.  It costs no bytes: the file is the
same, and the model it names says which decoder reads it.

It works at LR resolution on the pixel-unshuffled image (3 s^2 channels), so
its cost per HR pixel falls as 1/s^2, and predicts a residual, starting at
zero (an untrained head is the identity).  Trained with L2 on the decoder's
own uint8 output at the model's default Z temperature and a spread of LR
qualities (training/head.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def block_dilations(blocks: int, dilated: int = 0, dilation: int = 1) -> list:
    """Each residual block's dilation.  The last `dilated` blocks space their
    taps `dilation` apart: the same cost per block, a wider view (AVIF's
    blocks are up to 64 LR pixels)."""
    return [1] * (blocks - dilated) + [dilation] * dilated


class RestorationHead(nn.Module):
    def __init__(self, scale: int, width: int, blocks: int, channels: int = 3,
                 dilated: int = 0, dilation: int = 1):
        super().__init__()
        c = channels * scale * scale
        self.scale, self.blocks = scale, blocks
        self.dilations = block_dilations(blocks, dilated, dilation)
        self.conv_in = nn.Conv2d(c, width, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=d, dilation=d))
            for d in self.dilations)
        self.conv_out = nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def reach(self) -> int:
        """LR pixels each side that one output pixel reads: a 3x3 conv's dilation each."""
        return 2 * sum(self.dilations) + 2

    def load_grown(self, state: dict) -> int:
        """Load a head of this width with at most as many blocks; the blocks it
        lacks start as the identity (their last conv zeroed), so the deeper head
        begins with exactly the shallower one's output.  -> blocks added."""
        have = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("body.")), default=-1)
        if have > self.blocks:
            raise ValueError(f"a head of {have} blocks does not fit in {self.blocks}")
        try:
            result = self.load_state_dict(state, strict=False)
        except RuntimeError as e:   # a weight of another size: another width or channel count
            raise ValueError(f"not a head of this shape: {str(e).splitlines()[-1].strip()}") from None
        new = tuple(f"body.{i}." for i in range(have, self.blocks))
        wrong = result.unexpected_keys + [k for k in result.missing_keys if not k.startswith(new)]
        if wrong:
            raise ValueError(f"not a head of this shape: {wrong[0]}")
        for block in list(self.body)[have:]:
            nn.init.zeros_(block[2].weight)
            nn.init.zeros_(block[2].bias)
        return self.blocks - have

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """HR (N, 3, H, W) in [0, 1], H and W multiples of s -> restored, same shape."""
        # channels-last: oneDNN's convolutions run 1.4x as fast this way on 2 threads
        h = F.relu(self.conv_in(F.pixel_unshuffle(x, self.scale).contiguous(
            memory_format=torch.channels_last)))
        for block in self.body:
            h = h + block(h)
        return x + F.pixel_shuffle(self.conv_out(h).contiguous(), self.scale)

"""Tiled forward, inverse and mask, in bounded memory and bit-exact.

The flow is convolutional, so a tile with enough context around it gives
(nearly) the same pixels as the whole image.  The encoder's forward and mask
take images up to WHOLE_MAX_PIXELS whole, larger ones in tiles of TILE_HR HR
pixels with MARGIN_LR LR pixels of context.  The decoder's inverse always
works in the same tiles of DECODE_CORE_LR LR pixels, each on one thread, and
the restoration head in tiles of HEAD_CORE_LR fixed by the image's size, on
all of torch's threads, with kernels that reduce in a fixed order, so the
pixels do not depend on the thread count (inverse_rgb, restore_rgb).  Tiling is an implementation
detail: the .rsc format does not depend on it; seams cost under 0.05 dB
(tests/test_tiling.py, tests/test_determinism.py).
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .mask import MaskParams, lr_mask

WHOLE_MAX_PIXELS = 1 << 22     # 4 MP: at x2 the whole-image path peaks near 1 GB here
TILE_HR = 512                  # core tile side in HR pixels (a 1152-pixel tile took 770 MB)
MARGIN_LR = 8                  # context each side in LR pixels (the flow's effective reach);
                               # the latent prior has its own (inverse_rgb, margin_lr)
MASK_MARGIN_HR = 8             # blur (3 sigma) + Sobel + NMS reach, in HR pixels
DECODE_CORE_LR = 128           # the decoder's fixed tile core in LR pixels (inverse_rgb)
HEAD_CORE_LR = 512             # the restoration head's tile core in LR pixels (restore_rgb): at
                               # width 48 about 60 MB an activation

_REPORT = contextvars.ContextVar("tile_report", default=None)


@contextmanager
def reporting(report):
    """report(stage, done, total) after each tile of the tiled stages below
    (a progress bar for a large photo), in the thread that entered this."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


def _done(stage: str, done: int, total: int) -> None:
    report = _REPORT.get()
    if report is not None:
        report(stage, done, total)


def boxes(n: int, core: int, margin: int):
    """1-D tiling of range(n): (core start, core end, extended start, extended end)."""
    for a in range(0, n, core):
        b = min(a + core, n)
        yield a, b, max(0, a - margin), min(n, b + margin)


@dataclass(frozen=True)
class Tile:
    """One tile of a 2-D grid: a core, and its window (the core with context
    around it), as boxes() gives them for the rows and for the columns."""
    rows: tuple
    cols: tuple

    def window(self, s: int = 1) -> tuple[slice, slice]:
        """The window's rows and columns, s pixels per grid pixel."""
        (_, _, yc, yd), (_, _, xc, xd) = self.rows, self.cols
        return slice(yc * s, yd * s), slice(xc * s, xd * s)

    def core(self, s: int = 1) -> tuple[slice, slice]:
        """The core's rows and columns in the whole image."""
        (ya, yb, _, _), (xa, xb, _, _) = self.rows, self.cols
        return slice(ya * s, yb * s), slice(xa * s, xb * s)

    def core_in_window(self, s: int = 1) -> tuple[slice, slice]:
        """The core's rows and columns in what the window gives."""
        (ya, yb, yc, _), (xa, xb, xc, _) = self.rows, self.cols
        return slice((ya - yc) * s, (yb - yc) * s), slice((xa - xc) * s, (xb - xc) * s)

    @property
    def core_pixels(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])


def tiles(h: int, w: int, core: int, margin: int) -> list[Tile]:
    """An (h, w) grid in tiles of `core` pixels a side with `margin` around each, row by row."""
    return [Tile(r, c) for r in boxes(h, core, margin) for c in boxes(w, core, margin)]


def margin_lr(net) -> int:
    """Context of a tile that runs the whole inverse (refinement's): the blocks'
    reach and the latent prior's."""
    return MARGIN_LR + net.prior_reach


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb).astype(np.float32) / 255).permute(2, 0, 1)[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def pad(rgb: np.ndarray, unit: int) -> np.ndarray:
    """(H, W, C) -> sides padded up to multiples of `unit`, mirroring the edge."""
    h, w = rgb.shape[:2]
    ph, pw = -h % unit, -w % unit
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="symmetric") if ph or pw else rgb


def forward_y(net, padded: np.ndarray) -> torch.Tensor:
    """HR uint8 (H, W, 3), H and W multiples of s -> Y (1, 3, H/s, W/s), float."""
    s = net.config.scale
    h, w = padded.shape[:2]
    with torch.inference_mode():
        if h * w <= WHOLE_MAX_PIXELS:
            return net.forward_levels(to_tensor(padded))[:, :3]
        y = torch.empty(1, 3, h // s, w // s, dtype=torch.float32)
        parts = tiles(h // s, w // s, TILE_HR // s, MARGIN_LR)
        for i, t in enumerate(parts, 1):
            out = net.forward_levels(to_tensor(padded[t.window(s)]))[:, :3]
            y[(..., *t.core())] = out[(..., *t.core_in_window())]
            _done("flow", i, len(parts))
        return y


def inverse_rgb(net, lr: np.ndarray, decoder_input, restore: bool = True) -> np.ndarray:
    """LR uint8 or float (h, w, 3) on the 0..255 scale, decoder_input: the
    image's latent.DecoderInput -> reconstruction uint8 (h s, w s, 3), after
    the restoration head where the model has one and `restore` (restore_rgb).

    Two passes over the same tiles of DECODE_CORE_LR LR pixels: the latent
    prior (latent_in_tiles), then the levels with MARGIN_LR around each tile.
    Two passes, not one with both margins, so that the prior is not computed
    again on every tile's wider window: 5 % faster on the timing photo.

    Bit-exact at any thread count: the tiles are always the same, each tile
    is computed with one torch thread (whose reductions run in a fixed
    order), and the tiles are spread over as many Python threads as torch
    has, so threads change the speed, never the pixels
    (BENCHMARKS.md, "Bit-exact decoding")."""
    s = net.config.scale
    h, w = lr.shape[:2]
    latent = latent_in_tiles(net, lr, decoder_input)
    out = np.empty((h * s, w * s, 3), np.uint8)

    def levels(t: Tile):
        part = to_uint8(net.inverse_levels(latent[(..., *t.window())]))
        out[t.core(s)] = part[t.core_in_window(s)]

    _in_fixed_tiles(h, w, MARGIN_LR, levels, "inverse flow, pass 2 of 2")
    return restore_rgb(net, out) if restore else out


def latent_in_tiles(net, lr: np.ndarray, decoder_input) -> torch.Tensor:
    """The inverse's first pass: [Y | B | Z] of the whole LR with the latent
    prior's coupling undone (flow.inverse_prior), 3 floats an HR pixel.  The
    prior is a conv stack, so its tiles need only its own reach around them."""
    h, w = lr.shape[:2]
    latent = torch.empty(1, net.latent_channels, h, w, dtype=torch.float32)

    def prior(t: Tile):
        rows, cols = t.window()
        x = net.inverse_prior(decoder_input(to_tensor(lr[rows, cols]), rows, cols))
        latent[(..., *t.core())] = x[(..., *t.core_in_window())]

    _in_fixed_tiles(h, w, net.prior_reach, prior, "inverse flow, pass 1 of 2")
    return latent


def restore_rgb(net, rgb: np.ndarray) -> np.ndarray:
    """The restoration head (restore.py) over the inverse's uint8 output
    (H, W), in tiles of HEAD_CORE_LR units of u pixels (the head's unit: s,
    or 2 at x1; the image is padded to whole units and the padding cut off
    again) with the head's reach around each: a stack of convolutions is exact
    on such a tile up to float rounding (other tiles can move a pixel or two
    by one level), and its kernels reduce in a fixed order, so with the tiles
    fixed by the image's size the pixels do not depend on the thread count
    (tests/test_restore.py).  Unlike the inverse's, these tiles only bound
    memory, and each uses all of torch's threads: a 768x512 photo is one
    tile, with no context computed twice.  A model with no head: `rgb` as it is."""
    if net.head is None:
        return rgb
    s, m = net.head.scale, net.head_reach
    hr, wr = rgb.shape[:2]
    rgb = pad(rgb, s)
    h, w = rgb.shape[0] // s, rgb.shape[1] // s
    out = np.empty_like(rgb)
    parts = tiles(h, w, HEAD_CORE_LR, m)
    for i, t in enumerate(parts, 1):
        with torch.inference_mode():
            part = to_uint8(net.restore(to_tensor(rgb[t.window(s)])))
        out[t.core(s)] = part[t.core_in_window(s)]
        _done("restoration", i, len(parts))
    return out[:hr, :wr]


def _in_fixed_tiles(h: int, w: int, margin: int, run_tile, stage: str) -> None:
    """run_tile(t) for each Tile of an (h, w) LR grid in cores of
    DECODE_CORE_LR with `margin` around each, one torch thread per tile, the
    tiles over torch's thread count of Python threads; `stage` names them to
    `reporting`."""
    parts = tiles(h, w, DECODE_CORE_LR, margin)

    def run(t: Tile):
        torch.set_num_threads(1)   # OpenMP's thread count is per calling thread: set it in each
        with torch.inference_mode():
            run_tile(t)

    # Always in pool threads, even one: the main thread's kernels measured
    # different in the last bits from a pool thread's at the same thread count.
    from concurrent.futures import ThreadPoolExecutor
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max(1, min(threads, len(parts)))) as pool:
            for i, _ in enumerate(pool.map(run, parts), 1):   # in order, in this thread
                _done(stage, i, len(parts))
    finally:   # the pool threads' set_num_threads(1) is also what threads started later get
        torch.set_num_threads(threads)


def mask_levels(padded: np.ndarray, scale: int, params: MaskParams) -> np.ndarray:
    """lr_mask in HR tiles; the margin covers the operators' reach, so the
    result equals the whole-image mask."""
    h, w = padded.shape[:2]
    if h * w <= WHOLE_MAX_PIXELS:
        return lr_mask(padded, scale, params)
    m = -(-MASK_MARGIN_HR // scale)            # margin in LR pixels
    out = np.empty((h // scale, w // scale), np.uint8)
    for t in tiles(h // scale, w // scale, TILE_HR // scale, m):
        out[t.core()] = lr_mask(padded[t.window(scale)], scale, params)[t.core_in_window()]
    return out

"""Tiled forward, inverse and mask, in bounded memory and bit-exact.

The flow is convolutional, so a tile with enough context around it gives
(nearly) the same pixels as the whole image.  The encoder's forward and mask
take images up to WHOLE_MAX_PIXELS whole, larger ones in tiles of TILE_HR HR
pixels with MARGIN_LR LR pixels of context.  The decoder always works in the
same tiles of DECODE_CORE_LR LR pixels, each on one thread, so its pixels do
not depend on the thread count (inverse_rgb).  Tiling is an implementation
detail: the .rsc format does not depend on it; seams cost under 0.05 dB
(tests/test_tiling.py, tests/test_determinism.py).
"""
from __future__ import annotations

import numpy as np
import torch

from .mask import MaskParams, lr_mask

WHOLE_MAX_PIXELS = 1 << 22     # 4 MP: at x2 the whole-image path peaks near 1 GB here
TILE_HR = 512                  # core tile side in HR pixels (a 1152-pixel tile took 770 MB)
MARGIN_LR = 8                  # context each side in LR pixels (the flow's effective reach)
                               # plus, in the inverse, the latent prior's reach (margin_lr)
MASK_MARGIN_HR = 8             # blur (3 sigma) + Sobel + NMS reach, in HR pixels
DECODE_CORE_LR = 128           # the decoder's fixed tile core in LR pixels (inverse_rgb)
HEAD_CORE_LR = 512             # the restoration head's tile core in LR pixels (restore_rgb): at
                               # width 48 about 60 MB an activation


def boxes(n: int, core: int, margin: int):
    """1-D tiling of range(n): (core start, core end, extended start, extended end)."""
    for a in range(0, n, core):
        b = min(a + core, n)
        yield a, b, max(0, a - margin), min(n, b + margin)


def margin_lr(net) -> int:
    """Context of an inverse tile: the blocks' reach and the latent prior's."""
    return MARGIN_LR + net.prior_reach


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb).astype(np.float32) / 255).permute(2, 0, 1)[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def forward_y(net, padded: np.ndarray) -> torch.Tensor:
    """HR uint8 (H, W, 3), H and W multiples of s -> Y (1, 3, H/s, W/s), float."""
    s = net.config.scale
    h, w = padded.shape[:2]
    with torch.inference_mode():
        if h * w <= WHOLE_MAX_PIXELS:
            return net.forward_levels(to_tensor(padded))[:, :3]
        y = torch.empty(1, 3, h // s, w // s)
        core = TILE_HR // s
        for ya, yb, yc, yd in boxes(h // s, core, MARGIN_LR):
            for xa, xb, xc, xd in boxes(w // s, core, MARGIN_LR):
                out = net.forward_levels(to_tensor(padded[yc * s:yd * s, xc * s:xd * s]))[:, :3]
                y[:, :, ya:yb, xa:xb] = out[:, :, ya - yc:yb - yc, xa - xc:xb - xc]
        return y


def inverse_rgb(net, lr: np.ndarray, decoder_input, workers: int | None = None) -> np.ndarray:
    """LR uint8 or float (h, w, 3) on the 0..255 scale, decoder_input: the
    image's latent.DecoderInput -> reconstruction uint8 (h s, w s, 3), after
    the restoration head where the model has one (restore_rgb).

    Bit-exact at any thread count: the image is always cut into the same
    tiles of DECODE_CORE_LR LR pixels (with the inverse's context around
    each), each tile is computed with one torch thread (whose reductions run
    in a fixed order), and the tiles are spread over `workers` Python threads
    (default: torch's thread count), so threads change the speed, never the
    pixels (BENCHMARKS.md, "Bit-exact decoding")."""
    s = net.config.scale
    h, w = lr.shape[:2]

    def tile(ys, xs):
        return to_uint8(net.inverse(decoder_input(to_tensor(lr[ys, xs]), ys, xs)))

    out = _in_fixed_tiles(h, w, s, margin_lr(net), tile, workers)
    return out if net.head is None else restore_rgb(net, out)


def restore_rgb(net, rgb: np.ndarray) -> np.ndarray:
    """The restoration head (restore.py) over the inverse's uint8 output
    (H, W multiples of s), in tiles of HEAD_CORE_LR LR pixels with the head's
    reach around each: a stack of convolutions is exact on such a tile, and
    its kernels reduce in a fixed order, so the pixels depend neither on the
    tiles nor on the thread count (tests/test_restore.py).  Unlike the
    inverse's, these tiles only bound memory, and each uses all of torch's
    threads: a 768x512 photo is one tile, with no context computed twice."""
    s, m = net.config.scale, net.head_reach
    h, w = rgb.shape[0] // s, rgb.shape[1] // s
    out = np.empty_like(rgb)
    for ya, yb, yc, yd in boxes(h, HEAD_CORE_LR, m):
        for xa, xb, xc, xd in boxes(w, HEAD_CORE_LR, m):
            with torch.inference_mode():
                t = to_uint8(net.restore(to_tensor(rgb[yc * s:yd * s, xc * s:xd * s])))
            out[ya * s:yb * s, xa * s:xb * s] = t[(ya - yc) * s:(yb - yc) * s, (xa - xc) * s:(xb - xc) * s]
    return out


def _in_fixed_tiles(h: int, w: int, s: int, margin: int, tile, workers) -> np.ndarray:
    """uint8 (h s, w s, 3) from tile(rows, cols), the HR output of the LR window
    (rows, cols): cores of DECODE_CORE_LR LR pixels with `margin` around each,
    one torch thread per tile, the tiles over `workers` Python threads."""
    out = np.empty((h * s, w * s, 3), np.uint8)
    tiles = [(r, c) for r in boxes(h, DECODE_CORE_LR, margin) for c in boxes(w, DECODE_CORE_LR, margin)]

    def run(box):
        torch.set_num_threads(1)   # OpenMP's thread count is per calling thread: set it in each
        (ya, yb, yc, yd), (xa, xb, xc, xd) = box
        with torch.inference_mode():
            t = tile(slice(yc, yd), slice(xc, xd))
        out[ya * s:yb * s, xa * s:xb * s] = t[(ya - yc) * s:(yb - yc) * s, (xa - xc) * s:(xb - xc) * s]

    # Always in pool threads, even one: the main thread's kernels measured
    # different in the last bits from a pool thread's at the same thread count.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, min(workers or torch.get_num_threads(), len(tiles)))) as pool:
        list(pool.map(run, tiles))
    return out


def mask_levels(padded: np.ndarray, scale: int, params: MaskParams) -> np.ndarray:
    """lr_mask in HR tiles; the margin covers the operators' reach, so the
    result equals the whole-image mask."""
    h, w = padded.shape[:2]
    if h * w <= WHOLE_MAX_PIXELS:
        return lr_mask(padded, scale, params)
    m = -(-MASK_MARGIN_HR // scale)            # margin in LR pixels
    out = np.empty((h // scale, w // scale), np.uint8)
    core = TILE_HR // scale
    for ya, yb, yc, yd in boxes(h // scale, core, m):
        for xa, xb, xc, xd in boxes(w // scale, core, m):
            lv = lr_mask(padded[yc * scale:yd * scale, xc * scale:xd * scale], scale, params)
            out[ya:yb, xa:xb] = lv[ya - yc:yb - yc, xa - xc:xb - xc]
    return out

"""The x1 head's gain map: how much of the restoration head's correction each
block of the photo keeps.

The head (restore.py) is trained to undo AVIF's loss on average photos.  At
high AVIF quality it also smooths fine texture and noise that the photo has
(up to 2.3 dB lost on a photo at AVIF quality 90), and elsewhere it corrects
too little or too much.  The encoder has the photo, so, like a video codec's
loop-filter switches, it picks for each BLOCK x BLOCK block the gain g that
brings d + g (h - d) closest to the photo, where d is the AVIF decode and h
the head's output, and stores the choices in the mask section (an x1 file has
no edge mask).  Level 0 is g = 1, the head as it is, so an empty map decodes
as a file without one.  The map costs 3 bits a block before entropy coding,
at most about 80 bytes, 0.09 % of a file from AVIF quality GAINS_FROM up
(BENCHMARKS.md, "The head's gain map").
"""
from __future__ import annotations

import numpy as np

from . import mask_coding

BLOCK = 64          # pixels a side; 32 gained 0.03-0.05 dB more at AVIF quality 80-90 and lost below 60
BAND_ROWS = 8       # rows of blocks weighed or applied at a time (memory, not the result)
BITS = 3
GAINS4 = np.array([4, 0, 1, 2, 3, 5, 6, 7], np.int32)   # 4 g for levels 0..7: 0 is the head as trained
# The map is kept when its gain in dB beats what its bytes would buy as AVIF
# quality: about 0.08 dB per 1 % of bytes at AVIF quality 40-70 on the
# training photos (BENCHMARKS.md, "Quality ladder"), the slope of x1's curve.
DB_PER_PERCENT = 0.08
# The encoder chooses a map from this AVIF quality on (from -q 86), where the
# head gains least reliably and files are coded at AVIF speed 4, which leaves
# the head's run (0.14 s for 768x512 in bfloat16, encoder._head_estimate) within
# the encode time we aim for; below, --refine chooses one (+0.00-0.04 dB at
# equal size there).
GAINS_FROM = 61
# Below it the encoder chooses a map for graphics: where the head, trained on
# photos, adds a ripple to flat areas the map takes it out (+0.3 to +10 dB on
# charts, screenshots and line art at AVIF quality 14-60; BENCHMARKS.md,
# "Graphics").  It tells them by the share of pixels equal to their right and
# lower neighbours: at most 0.34 on 639 of 641 photos (a slide and a clear
# sky: 0.50, 0.53), 0.44-0.98 on those graphics.  The test takes 8 ms for
# 768x768; a photo that passes costs only the head's run.
FLAT_SHARE = 0.4


def grid(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the map for a photo of this size."""
    return -(-height // BLOCK), -(-width // BLOCK)


def flat_share(x: np.ndarray, band: int = 1024) -> float:
    """Of an (H, W, 3) uint8 picture's pixels that have a right and a lower
    neighbour, the share equal to both; counted `band` rows at a time, in a
    few bytes a pixel of that band."""
    h, w = x.shape[:2]
    if h < 2 or w < 2:
        return 0.0
    flat = 0
    for r in range(0, h - 1, band):
        here = x[r:r + band + 1]
        right = (here[:-1, 1:] == here[:-1, :-1]).all(2)
        below = (here[1:, :-1] == here[:-1, :-1]).all(2)
        flat += np.count_nonzero(right & below)
    return flat / ((h - 1) * (w - 1))


def _terms(d: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The parts of d + g (h - d) that do not depend on g, for uint8 d and h:
    4 d + 2 and h - d, int32."""
    di = d.astype(np.int32)
    return 4 * di + 2, h.astype(np.int32) - di


def _gained(terms, g4) -> np.ndarray:
    """round(d + g (h - d)), clamped, int32, for integer g4 = 4 g: integer
    arithmetic, so every decoder gets the same pixels from the same h."""
    base, r = terms
    return np.clip((base + g4 * r) >> 2, 0, 255)


def _per_pixel(levels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each pixel's 4 g, (height, width, 1), from the block levels."""
    g4 = GAINS4[levels.astype(np.intp)]
    return np.repeat(np.repeat(g4, BLOCK, 0), BLOCK, 1)[:height, :width, None]


def _bands(rows: int):
    """The map's rows in bands of BAND_ROWS block rows -> (block rows, pixel rows) slices."""
    for r in range(0, rows, BAND_ROWS):
        yield slice(r, r + BAND_ROWS), slice(r * BLOCK, (r + BAND_ROWS) * BLOCK)


def apply(d: np.ndarray, h: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """AVIF decode d and head output h (H, W, 3) uint8, block levels (grid) ->
    the decoded photo, uint8; in bands (memory)."""
    out = np.empty_like(d)
    for blocks, band in _bands(levels.shape[0]):
        out[band] = _gained(_terms(d[band], h[band]), _per_pixel(levels[blocks], *d[band].shape[:2]))
    return out


def _block_sums(err: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per-pixel values (H, W) -> their sum over each block, (rows, cols)."""
    e = np.zeros((rows * BLOCK, cols * BLOCK), np.float64)
    e[: err.shape[0], : err.shape[1]] = err
    return e.reshape(rows, BLOCK, cols, BLOCK).sum((1, 3))


def choose(x: np.ndarray, d: np.ndarray, h: np.ndarray, file_bytes: int) -> np.ndarray:
    """The photo x, its AVIF decode d and the head's output h, (H, W, 3)
    uint8, and the file's size without a map -> block levels (grid; all zero
    where a map does not pay for its bytes).  Each block takes the gain of
    least squared error."""
    rows, cols = grid(*x.shape[:2])
    errs = np.zeros((len(GAINS4), rows, cols))
    for blocks, band in _bands(rows):   # in bands: int32 copies of a whole 24 MP photo took 1.5 GB
        xi, terms = x[band].astype(np.int32), _terms(d[band], h[band])   # computed once for the 8 gains
        n = errs[0, blocks].shape[0]
        for k, g4 in enumerate(GAINS4):
            v = _gained(terms, g4) - xi
            errs[k, blocks] = _block_sums(np.einsum("ijk,ijk->ij", v, v), n, cols)
    levels = errs.argmin(0).astype(np.uint8)
    if not levels.any():
        return levels
    sse_head = errs[0].sum()
    sse_map = np.take_along_axis(errs, levels[None].astype(np.intp), 0).sum()
    gain_db = 10 * np.log10(max(sse_head, 1e-9) / max(sse_map, 1e-9))
    cost = 100 * (len(mask_coding.encode(levels, BITS)) - 1) / max(file_bytes, 1)
    return levels if gain_db > DB_PER_PERCENT * cost else np.zeros_like(levels)

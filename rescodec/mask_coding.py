"""Entropy coding of the LR boundary mask (levels 0 .. 2^bits - 1).

Two coders; the encoder keeps the smaller output and writes its id first
(an all-zero mask, the AVIF models' default, is EMPTY (2): the id alone):
- BITPLANES (0): each bit-plane packed with bitarray, then zstd -19.  The
  baseline the design asks for; zstd finds the long zero runs of a sparse mask.
- CONTEXT (1): a static two-pass context model: a level's probabilities
  depend on its up-left, up and up-right neighbours (not the left one, so a
  whole row decodes in one vectorised call).  The per-context counts go in
  the payload, and constriction's range coder codes the levels.
CHANGELOG.md, 0.1.0, `benchmark storage`, has the measured sizes of both.
"""
from __future__ import annotations


import numpy as np
import zstandard
from bitarray import bitarray

from . import zstd_frame
from .errors import CorruptError

BITPLANES, CONTEXT, EMPTY = 0, 1, 2
CODER_NAMES = {BITPLANES: "bitplanes+zstd", CONTEXT: "row-context range coder", EMPTY: "empty"}


def _encode_bitplanes(levels: np.ndarray, bits: int) -> bytes:
    planes = bitarray(endian="little")
    flat = levels.ravel()
    for b in range(bits):
        planes.extend(((flat >> b) & 1).astype(bool).tolist())
    return zstandard.ZstdCompressor(level=19).compress(planes.tobytes())


def _decode_bitplanes(data: bytes, shape, bits: int) -> np.ndarray:
    n = shape[0] * shape[1]
    need = (n * bits + 7) // 8
    raw = zstd_frame.read(data, "mask section", size=need)
    planes = bitarray(endian="little")
    planes.frombytes(raw)
    if planes[n * bits:].any():   # one file, one encoding: the last byte is padded with zeros
        raise CorruptError("corrupt .rsc file (mask section: padding bits set)")
    arr = np.frombuffer(planes.unpack(), np.uint8)[: n * bits].reshape(bits, n)
    out = np.zeros(n, np.uint8)
    for b in range(bits):
        out |= arr[b] << b
    return out.reshape(shape)


def _contexts(prev_row: np.ndarray) -> np.ndarray:
    """Context of each pixel from the row above: (up-left, up, up-right) each
    min(level, 2), giving 27 contexts."""
    p = np.concatenate([[0], prev_row, [0]]).astype(np.int64)
    q = np.minimum(p, 2)
    return q[:-2] * 9 + q[1:-1] * 3 + q[2:]


N_CONTEXTS = 27


def _encode_context(levels: np.ndarray, bits: int) -> bytes:
    h, w = levels.shape
    k = 1 << bits
    ctx = np.empty((h, w), np.int64)
    prev = np.zeros(w, np.uint8)
    for y in range(h):
        ctx[y] = _contexts(prev)
        prev = levels[y]
    counts = np.zeros((N_CONTEXTS, k), np.int64)
    np.add.at(counts, (ctx.ravel(), levels.ravel().astype(np.int64)), 1)
    # counts are stored as u16 after scaling; +1 keeps every symbol codable
    scaled = np.where(counts > 0, np.maximum(1, counts * 65000 // np.maximum(counts.sum(1, keepdims=True), 1)), 0)
    table = (scaled + 1).astype("<u2")
    return table.tobytes() + _range_code(levels, ctx, _probabilities(table))


def _probabilities(table: np.ndarray) -> np.ndarray:
    """The u16 count table -> each context's float32 probabilities, as coder and reader use them."""
    t = table.astype(np.float64)
    return (t / t.sum(1, keepdims=True)).astype(np.float32)


def _range_code(levels: np.ndarray, ctx: np.ndarray, probs: np.ndarray) -> bytes:
    """The range coder's words for these levels in these contexts, little-endian."""
    import constriction
    enc = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(perfect=False)
    rows = max(1, (1 << 20) // max(levels.shape[1], 1))   # a million symbols a call: the same
    for y in range(0, levels.shape[0], rows):             # stream, in bounded memory
        enc.encode(levels[y:y + rows].ravel().astype(np.int32), model, probs[ctx[y:y + rows].ravel()])
    return enc.get_compressed().astype("<u4").tobytes()


def _decode_context(data: bytes, shape, bits: int) -> np.ndarray:
    import constriction
    h, w = shape
    k = 1 << bits
    tsize = N_CONTEXTS * k * 2
    if len(data) < tsize or len(data[tsize:]) % 4:
        raise CorruptError("corrupt .rsc file (mask section: bad context table)")
    table = np.frombuffer(data[:tsize], "<u2").reshape(N_CONTEXTS, k)
    if (table == 0).any():
        raise CorruptError("corrupt .rsc file (mask section: zero count)")
    probs = _probabilities(table)
    words = data[tsize:]
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(words, "<u4").astype(np.uint32))
    model = constriction.stream.model.Categorical(perfect=False)
    out = np.zeros((h, w), np.uint8)
    ctx = np.empty((h, w), np.int64)
    prev = np.zeros(w, np.uint8)
    try:
        for y in range(h):
            ctx[y] = _contexts(prev)
            out[y] = np.asarray(dec.decode(model, probs[ctx[y]]), np.uint8)
            prev = out[y]
    except Exception as e:  # constriction raises on exhausted or invalid data
        raise CorruptError(f"corrupt .rsc file (mask section: {type(e).__name__})") from None
    # the range coder reads missing words as zeros and leaves extra ones
    # unread: the words must be exactly the coder's output for these levels
    if _range_code(out, ctx, probs) != bytes(words):
        raise CorruptError("corrupt .rsc file (mask section: range-coded data of another length or content)")
    return out


def encode(levels: np.ndarray, bits: int) -> bytes:
    """uint8 (h, w) levels -> payload (coder byte + data), the smaller coder."""
    levels = np.ascontiguousarray(levels, np.uint8)
    if not levels.any():
        return bytes([EMPTY])
    cands = [bytes([BITPLANES]) + _encode_bitplanes(levels, bits)]
    if levels.size:
        cands.append(bytes([CONTEXT]) + _encode_context(levels, bits))
    return min(cands, key=len)


def decode(payload: bytes, shape, bits: int) -> np.ndarray:
    coder, data = payload[0], payload[1:]
    try:
        if coder == BITPLANES:
            out = _decode_bitplanes(data, shape, bits)
        elif coder == CONTEXT:
            out = _decode_context(data, shape, bits)
        elif coder == EMPTY and not data:
            out = np.zeros(shape, np.uint8)
        else:
            raise CorruptError(f"corrupt .rsc file (mask section: unknown coder {coder})")
    except CorruptError:
        raise
    except Exception as e:  # zstd / bitarray on damaged data
        raise CorruptError(f"corrupt .rsc file (mask section: {type(e).__name__})") from None
    if out.max(initial=0) >= (1 << bits):
        raise CorruptError("corrupt .rsc file (mask section: level out of range)")
    return out

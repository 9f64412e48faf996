"""Reading one zstd frame from a .rsc section, with the memory it may take
bounded before anything is allocated.

Every zstd payload of the format (the mask's bit-planes, x1's gain map, a
lossless picture or alpha stored as raw zstd, the metadata) is exactly one
frame that records its content size, as zstandard's compressor writes by
default.  The declared size is checked first: libzstd allocates what a frame
declares, whatever `max_output_size` says, so a few kilobytes of RLE blocks
could otherwise claim gigabytes."""
from __future__ import annotations

import zstandard

from .errors import CorruptError, LimitError


def read(frame: bytes, where: str, size: int | None = None, limit: int | None = None) -> bytes:
    """The content of the one zstd frame `frame`: exactly `size` bytes where
    given, else 1 to `limit` bytes (more is a LimitError).  A frame that does
    not record its size, declares another, or is followed by anything is a
    CorruptError naming `where` (e.g. "mask section")."""
    frame = bytes(frame)
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        raise CorruptError(f"corrupt .rsc file ({where}: bad zstd frame header)") from None
    if declared < 1:   # -1: not recorded; 0: nothing in it
        raise CorruptError(f"corrupt .rsc file ({where}: content size not recorded or 0)")
    if size is not None and declared != size:
        raise CorruptError(f"corrupt .rsc file ({where}: wrong length)")
    if limit is not None and declared > limit:
        raise LimitError(f"{where} of {declared} bytes is over the limit of {limit}")
    d = zstandard.ZstdDecompressor().decompressobj()
    try:   # libzstd refuses output past the declared size
        content = d.decompress(frame)
    except zstandard.ZstdError:
        raise CorruptError(f"corrupt .rsc file ({where}: zstd data)") from None
    if not d.eof or d.unused_data or len(content) != declared:
        raise CorruptError(f"corrupt .rsc file ({where}: not exactly one zstd frame)")
    return content

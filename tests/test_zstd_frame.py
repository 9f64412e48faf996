"""Every zstd payload of the format is one frame of a recorded, expected
size: a frame that claims more is refused before its content is made."""
import struct
import tracemalloc

import numpy as np
import pytest
import zstandard

from rescodec import lossless, mask_coding, zstd_frame
from rescodec.errors import CorruptError, LimitError


def rle_bomb(size: int) -> bytes:
    """A zstd frame declaring `size` bytes, made of RLE blocks of 128 KiB:
    4 bytes a block, so a few KiB stand for many MiB."""
    block = struct.pack("<I", 1 << 1 | (1 << 17) << 3)[:3] + b"\0"   # RLE, 128 KiB of byte 0
    blocks = bytearray(block * (size >> 17))
    blocks[-4] |= 1                                                    # the last block
    return struct.pack("<I", 0xFD2FB528) + b"\xe0" + struct.pack("<Q", size) + bytes(blocks)


def test_the_bomb_is_what_it_claims():
    assert zstandard.ZstdDecompressor().decompress(rle_bomb(1 << 20)) == bytes(1 << 20)


# each reader, given a frame in place of a (16, 16) grid's or picture's
READERS = {
    "mask": lambda frame: mask_coding.decode(b"\x00" + frame, (16, 16), 1),
    "alpha": lambda frame: lossless.decode(b"\x02" + struct.pack("<II", 16, 16) + frame, (16, 16), "alpha"),
    "LR": lambda frame: lossless.decode(b"\x02" + struct.pack("<II", 16, 16) + frame, (16, 16, 3), "LR"),
}


@pytest.mark.parametrize("reader", READERS)
def test_a_frame_claiming_more_is_refused_before_its_content_is_made(reader):
    tracemalloc.start()
    try:
        with pytest.raises(CorruptError, match="wrong length"):
            READERS[reader](rle_bomb(64 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("reader", READERS)
def test_anything_after_the_frame_is_refused(reader):
    size = {"mask": 32, "alpha": 256, "LR": 768}[reader]
    frame = zstandard.ZstdCompressor().compress(bytes(size))
    READERS[reader](frame)   # the frame alone is good
    for bad in (frame + b"junk", frame + frame, zstandard.ZstdCompressor(write_content_size=False).compress(
            bytes(size)), frame[:-2]):
        with pytest.raises(CorruptError):
            READERS[reader](bad)


def test_read_checks_size_and_limit():
    frame = zstandard.ZstdCompressor().compress(b"abc")
    assert zstd_frame.read(frame, "x", size=3) == zstd_frame.read(frame, "x", limit=3) == b"abc"
    with pytest.raises(CorruptError, match=r"\(x: wrong length\)"):
        zstd_frame.read(frame, "x", size=4)
    with pytest.raises(LimitError, match="over the limit of 2"):
        zstd_frame.read(frame, "x", limit=2)
    with pytest.raises(CorruptError, match="bad zstd frame header"):
        zstd_frame.read(b"not zstd", "x")
    assert np.frombuffer(zstd_frame.read(rle_bomb(1 << 17), "x", size=1 << 17), np.uint8).max() == 0

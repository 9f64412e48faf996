"""Fuzzing the .rsc reader: mutated and random inputs end in RscError only,
quickly and without large allocations.  A fast slice runs always; the long
run is `pytest -m slow tests/test_fuzz.py`."""
import struct
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageCms

import rescodec
from rescodec import container
from rescodec.errors import RscError

from conftest import gradient_image


@pytest.fixture(scope="module")
def valid():
    im = gradient_image(24, 40)
    rgba = np.dstack([im, np.full(im.shape[:2], 200, np.uint8)])
    tagged = Image.fromarray(im)   # a metadata section too (EXIF, ICC profile, XMP)
    tagged.info.update(exif=Image.Exif().tobytes(), xmp=b"<x/>",
                       icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    return [rescodec.encode(im, scale=4), rescodec.encode(rgba, scale=8), rescodec.encode(tagged, scale=4)]


def _mutate(data: bytes, rng) -> bytes:
    d = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:                                        # byte flips
        for i in rng.integers(0, len(d), rng.integers(1, 6)):
            d[i] ^= int(rng.integers(1, 256))
    elif kind == 1:                                      # truncation
        d = d[: rng.integers(0, len(d))]
    elif kind == 2:                                      # inserted bytes
        i = int(rng.integers(0, len(d)))
        d[i:i] = rng.integers(0, 256, rng.integers(1, 16), dtype=np.uint8).tobytes()
    elif kind == 3:                                      # huge length / size fields
        i = int(rng.integers(0, max(1, len(d) - 4)))
        d[i:i + 4] = struct.pack("<I", int(rng.choice([0xFFFFFFFF, 1 << 31, 1 << 20, 65536])))
    else:                                                # random bytes, some with the magic
        d = bytearray(rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8).tobytes())
        if rng.random() < 0.5:
            d[:4] = container.MAGIC
    return bytes(d)


def _fuzz(valid, n, seed, decode_every):
    rng = np.random.default_rng(seed)
    tracemalloc.start()
    worst = 0.0
    try:
        for i in range(n):
            data = _mutate(valid[i % len(valid)], rng)
            t = time.perf_counter()
            try:
                if i % decode_every == 0:
                    rescodec.decode(data)          # the whole decoder, not just the reader
                else:
                    container.unpack(data)
            except RscError:
                pass
            worst = max(worst, time.perf_counter() - t)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert worst < 5.0, f"one input took {worst:.1f} s"
    assert peak < 64 << 20, f"peak traced allocation {peak >> 20} MiB"


def test_fuzz_fast_slice(valid):
    _fuzz(valid, 1500, seed=1, decode_every=10)


@pytest.mark.slow
def test_fuzz_long(valid):
    _fuzz(valid, 30000, seed=2, decode_every=5)

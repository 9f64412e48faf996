"""Shared fixtures.  Test images are generated or come from scikit-image's
bundled CC0 samples, never from ../shared/datasets."""
import io

import numpy as np
import pytest
import skimage.data


@pytest.fixture(scope="session")
def photo():
    """A real photo: scikit-image's 'coffee' (CC0), cropped to 256x192 for speed."""
    return np.ascontiguousarray(skimage.data.coffee()[100:292, 150:406])


@pytest.fixture(scope="session")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture
def own_weights(tmp_path, monkeypatch):
    """A copy of the installed models' folder, in use for this test
    (RESCODEC_WEIGHTS), so that exports and manifest edits stay in it."""
    import shutil
    from rescodec import weights
    w = tmp_path / "weights"
    shutil.copytree(weights.weights_dir(), w)
    monkeypatch.setenv("RESCODEC_WEIGHTS", str(w))
    return w


def photo_folder(folder, count=3, h=96, w=128):
    """`count` gradient images saved as PNG in a new folder -> the folder."""
    from PIL import Image
    folder.mkdir()
    for i in range(count):
        Image.fromarray(gradient_image(h, w, seed=i)).save(folder / f"{i}.png")
    return folder


def gradient_image(h, w, seed=0):
    """Smooth colour ramps plus a little noise: compressible but not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1),
                    (x + y) * 127.0 / max(w + h - 2, 1)], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def x1_settings():
    """Complete settings for an x1 file from a network passed in (no registry)."""
    from rescodec.settings import EncodeSettings
    return EncodeSettings(scale=1, model="x1-test", threshold=65535.0, lr_step=1, lr_space="rgb",
                          lr_codec="avif", lr_quality=40, temperature=0.0)


def x1_net(seed=0):
    """An untrained x1 model whose head changes the picture a lot (a head
    trained to restore would be close to the identity)."""
    import torch
    from rescodec.flow import FlowConfig, RescaleFlow
    torch.manual_seed(seed)
    net = RescaleFlow(FlowConfig(scale=1, head_width=8, head_blocks=2)).eval()
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_(0, 0.05)
    return net


def with_header(data: bytes, version: int | None = None, flags: int | None = None) -> bytes:
    """The same .rsc file with another version and/or flags byte, its CRC redone
    (the header's in versions 1-6, the file's in 7).  The layout stays: a
    version 7 file cannot be made an older one this way."""
    import struct
    import zlib
    from rescodec import container
    compact = data[4] >= 7
    assert version is None or (version >= 7) == compact, "pack(legacy=True) makes a file of versions 1-6"
    out = bytearray(data)
    if version is not None:
        out[4] = version
    if flags is not None:
        out[5] = flags
    if compact:
        out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
        return bytes(out)
    n = container.unpack(data).sizes["header"] - 4
    out[n:n + 4] = struct.pack("<I", zlib.crc32(bytes(out[:n])))
    return bytes(out)


def as_legacy(data: bytes) -> bytes:
    """A version 7 file's header and sections in the layout of versions 4-6 (pack(legacy=True))."""
    from rescodec import codec, container
    f = codec.unpack(data)
    return container.pack(f.header, *(f.sections.get(k) for k in (1, 2, 3, 4)), legacy=True)


def as_version(data: bytes, version: int) -> bytes:
    """The same .rsc file with another version byte and its header CRC redone."""
    return with_header(data, version=version)


def random_flips(data: bytes, seed: int, count: int):
    """`count` copies of data, each with 1-3 random bytes XOR-ed with a nonzero value."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        d = bytearray(data)
        for i in rng.integers(0, len(d), rng.integers(1, 4)):
            d[i] ^= int(rng.integers(1, 256))
        yield bytes(d)


class Stream(io.RawIOBase):
    """A seekable binary file of `data` then zeros, `size` bytes in all,
    that keeps the furthest it was read to (`.read_to`): for bounds on reads."""

    def __init__(self, data: bytes, size: int):
        self.data, self.size, self.pos, self.read_to = data, size, 0, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=0):
        self.pos = (pos, self.pos + pos, self.size + pos)[whence]
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, b):
        n = max(0, min(len(b), self.size - self.pos))
        got = self.data[self.pos:self.pos + n]
        b[:len(got)] = got
        b[len(got):n] = bytes(n - len(got))
        self.pos += n
        self.read_to = max(self.read_to, self.pos)
        return n

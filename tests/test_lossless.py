import numpy as np
import pytest

from rescodec import lossless, lr_quant
from rescodec.settings import LR_SPACES, EncodeSettings
from rescodec.errors import CorruptError

from conftest import gradient_image


@pytest.mark.parametrize("codec", [lossless.PNG, lossless.WEBP, lossless.ZSTD, lossless.JXL,
                                   lossless.JXL_PLANES])
def test_each_codec_round_trips(codec):
    img = gradient_image(21, 13)
    data = lossless.encode(img, codecs=(codec,))
    assert data[0] == codec
    assert np.array_equal(lossless.decode(data, img.shape, "LR"), img)


def test_plane_round_trip():
    a = np.random.default_rng(0).integers(0, 256, (9, 7), dtype=np.uint8)
    assert np.array_equal(lossless.decode(lossless.encode(a), a.shape, "alpha"), a)


def test_smallest_is_kept(photo):
    sizes = [len(lossless.encode(photo, codecs=(c,))) for c in (0, 1, 2, 3)]
    assert len(lossless.encode(photo)) == min(sizes)


def test_wrong_size_is_corrupt():
    img = gradient_image(8, 8)
    for c in (0, 1, 2, 3):
        with pytest.raises(CorruptError):
            lossless.decode(lossless.encode(img, codecs=(c,)), (8, 9, 3), "LR")


@pytest.mark.parametrize("codec", [lossless.PNG, lossless.WEBP])
def test_every_plane_codec_round_trips_a_plane(codec):
    a = np.random.default_rng(1).integers(0, 256, (9, 7), dtype=np.uint8)
    assert np.array_equal(lossless.decode(lossless.encode(a, codecs=(codec,)), a.shape, "alpha"), a)


def test_a_picture_of_another_mode_is_corrupt():
    """One file, one encoding: an alpha plane stored as an RGB PNG, or an LR
    as a palette or 16-bit PNG, was converted and decoded."""
    import io
    from PIL import Image

    def png(im):
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return bytes([lossless.PNG]) + buf.getvalue()
    rgb = gradient_image(8, 8)
    grey = Image.fromarray(rgb[..., 0])
    for payload, shape in ((png(Image.fromarray(rgb)), (8, 8)), (png(grey), (8, 8, 3)),
                           (png(Image.fromarray(rgb).convert("P")), (8, 8, 3)),
                           (png(grey.convert("I;16")), (8, 8)), (png(Image.fromarray(rgb).convert("RGBA")), (8, 8, 3)),
                           (lossless.encode(rgb, codecs=(lossless.WEBP,)), (8, 8))):   # unequal channels as grey
        with pytest.raises(CorruptError, match="mode|unequal channels"):
            lossless.decode(payload, shape, "alpha")


def test_a_lossy_webp_or_another_stream_than_jpegxl_is_corrupt():
    """Codec id 1 is lossless WebP (VP8L) and 3 and 4 JPEG XL: a lossy (VP8)
    WebP was decoded, and info called it lossless."""
    import io
    import imagecodecs
    from PIL import Image
    rgb = gradient_image(16, 24)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", quality=30)
    assert buf.getvalue()[12:16] == b"VP8 "
    boxed = imagecodecs.jpegxl_encode(rgb, lossless=True, usecontainer=True)
    assert boxed[:12] == lossless.JXL_CONTAINER   # libjxl's own choice over 2^28 pixels: read
    assert np.array_equal(lossless.decode(bytes([lossless.JXL]) + boxed, rgb.shape, "LR"), rgb)
    for payload, said in ((bytes([lossless.WEBP]) + buf.getvalue(), "not a lossless"),
                          (bytes([lossless.JXL]) + b"\x89PNG" + boxed, "not a JPEG XL codestream")):
        with pytest.raises(CorruptError, match=said):
            lossless.decode(payload, rgb.shape, "LR")


def test_garbage_is_corrupt():
    for c in (0, 1, 2, 3, 9):
        with pytest.raises(CorruptError):
            lossless.decode(bytes([c]) + b"garbage" * 3, (4, 4, 3), "LR")


def test_jpegxl_beats_webp_on_a_photo(astronaut):
    # why it is a candidate: smaller than lossless WebP (3% here, 4-9% on LR images)
    assert len(lossless.encode(astronaut, codecs=(3,))) < 0.98 * len(lossless.encode(astronaut, codecs=(1,)))


def test_jpegxl_bomb_is_refused_before_decoding():
    # a tiny stream that declares 4000 x 4000 pixels, read where 8 x 8 is expected
    import imagecodecs
    bomb = bytes([lossless.JXL]) + imagecodecs.jpegxl_encode(
        np.zeros((4000, 4000, 3), np.uint8), lossless=True, effort=1)
    assert len(bomb) < 20000
    with pytest.raises(CorruptError):
        lossless.decode(bomb, (8, 8, 3), "LR")


def test_jpegxl_damage_is_corrupt():
    img = gradient_image(40, 30)
    data = bytearray(lossless.encode(img, codecs=(3,)))
    for cut in (3, 10, len(data) - 2):
        with pytest.raises(CorruptError):
            lossless.decode(bytes(data[:cut]), img.shape, "LR")


def test_coarse_codes_get_the_slow_effort(astronaut):
    """LR codes on a coarse step (astronaut at step 8) code >= 3% smaller than
    at JPEG XL's effort 5."""
    import imagecodecs
    codes = np.ascontiguousarray(astronaut[::2, ::2] // 8)
    quick = len(imagecodecs.jpegxl_encode(codes, lossless=True, effort=5))
    assert len(lossless.encode(codes, codecs=(lossless.JXL,))) - 1 < 0.97 * quick


def test_large_lrs_take_the_faster_effort(astronaut, monkeypatch):
    """Above _JXL_LARGE_PIXELS the faster effort: larger output, still lossless."""
    codes = np.ascontiguousarray(astronaut[::2, ::2] // 8)
    slow = lossless.encode(codes, codecs=(lossless.JXL,))
    monkeypatch.setattr(lossless, "_JXL_LARGE_PIXELS", codes.shape[0] * codes.shape[1] - 1)
    fast = lossless.encode(codes, codecs=(lossless.JXL,))
    assert len(fast) > len(slow)
    assert np.array_equal(lossless.decode(fast, codes.shape, "LR"), codes)


def test_8_bit_lrs_are_no_larger_than_at_effort_5(astronaut):
    """Effort 9 can lose on 8-bit LRs (x16: +2%); the encoder keeps the smaller."""
    import imagecodecs
    lr = np.ascontiguousarray(astronaut[::16, ::16])
    quick = len(imagecodecs.jpegxl_encode(lr, lossless=True, effort=5))
    assert len(lossless.encode(lr, codecs=(lossless.JXL,))) - 1 <= quick


@pytest.mark.parametrize("space", LR_SPACES)
def test_the_grid_is_what_the_decoder_reads(space):
    """lr_grid (training, refinement) gives the LR that the decoder rebuilds
    from the stored codes, with an identity gradient (straight-through)."""
    import torch
    y = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    y.requires_grad_(True)
    q = lr_quant.lr_grid(y, 8, space)
    codes = lr_quant.lr_codes(y, 8, space)
    assert codes.dtype == np.uint8 and codes.max() <= round(255 / 8)
    rebuilt = lr_quant.lr_from_codes(codes, 8, space).astype(np.float32)
    assert np.abs(rebuilt - q.detach()[0].permute(1, 2, 0).numpy() * 255).max() < 1e-3
    q.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))
    assert 0 <= q.min() and q.max() <= 1


def test_ycc_codes_store_smaller(astronaut):
    """YCbCr codes at step 8 store >= 20% smaller than RGB codes at step 8
    (astronaut halved: 26% smaller; flow LRs at x2: about 27%),
    and the RGB they decode to stays within the step's reach of the input."""
    import torch
    lr = np.ascontiguousarray(astronaut[::2, ::2])
    y = torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    rgb_bytes = len(lossless.encode(lr_quant.lr_codes(y, 8, "rgb")))
    ycc_bytes = len(lossless.encode(lr_quant.lr_codes(y, 8, "ycc")))
    assert ycc_bytes < 0.8 * rgb_bytes
    back = lr_quant.lr_from_codes(lr_quant.lr_codes(y, 8, "ycc"), 8, "ycc")
    assert np.abs(back - lr).mean() < 4


def test_unknown_lr_space_is_refused():
    with pytest.raises(ValueError, match="LR space"):
        EncodeSettings(lr_space="lab").validate()


def test_planes_are_kept_where_smaller_and_only_for_three_channels(astronaut):
    """YCbCr codes (decorrelated already) store smaller as stacked planes than
    through JPEG XL's colour transforms; a single plane never takes codec 4."""
    import torch
    y = torch.from_numpy(astronaut[::2, ::2].astype(np.float32) / 255).permute(2, 0, 1)[None]
    codes = lr_quant.lr_codes(y, 8, "ycc")
    planes = lossless.encode(codes, codecs=(lossless.JXL_PLANES,))
    assert len(planes) < len(lossless.encode(codes, codecs=(lossless.JXL,)))
    assert lossless.encode(codes)[0] == lossless.JXL_PLANES
    alpha = np.ascontiguousarray(astronaut[..., 0])
    assert lossless.encode(alpha)[0] != lossless.JXL_PLANES
    with pytest.raises(CorruptError, match="single plane"):
        lossless.decode(planes, codes.shape[:2], "alpha")

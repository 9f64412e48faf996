"""The Pillow plugin, tested the way Pillow tests its own plugins."""
import io

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import rescodec
from rescodec.errors import RscError
from rescodec.pillow_plugin import RscImageFile

from conftest import gradient_image


@pytest.fixture
def rsc_file(tmp_path):
    path = tmp_path / "g.rsc"
    path.write_bytes(rescodec.encode(gradient_image(40, 56), scale=4))
    return path


def test_sanity(rsc_file):
    with Image.open(rsc_file) as im:
        assert im.format == "RSC" and im.mode == "RGB" and im.size == (56, 40)
        im.load()
        assert np.array_equal(np.asarray(im), np.asarray(rescodec.decode(rsc_file.read_bytes())))


def test_invalid_file(tmp_path):
    png = tmp_path / "x.png"
    Image.fromarray(gradient_image(8, 8)).save(png)
    with open(png, "rb") as f, pytest.raises(SyntaxError):
        RscImageFile(f)
    with Image.open(png) as im:                    # falls through to PNG
        assert im.format == "PNG"


def test_truncated(rsc_file):
    data = rsc_file.read_bytes()
    for n in (5, 30, len(data) // 2, len(data) - 1):
        with pytest.raises((RscError, UnidentifiedImageError)):
            with Image.open(io.BytesIO(data[:n])) as im:
                im.load()


def test_save_round_trip(tmp_path):
    src = Image.fromarray(gradient_image(48, 32))
    out = tmp_path / "s.rsc"
    src.save(out, scale=8, seed=3)
    with Image.open(out) as im:
        assert im.info["scale"] == 8 and im.size == (32, 48)
        im.load()
        assert np.array_equal(np.asarray(im), np.asarray(rescodec.decode(rescodec.encode(src, scale=8, seed=3))))


def test_save_takes_pillows_avif_speed(tmp_path):
    """speed=, as Pillow's AVIF saver names it: a ValueError before (unknown option)."""
    src = Image.fromarray(gradient_image(48, 32))
    src.save(tmp_path / "a.rsc", quality=20, speed=8)
    assert (tmp_path / "a.rsc").read_bytes() == rescodec.encode(src, quality=20, lr_speed=8)
    assert (tmp_path / "a.rsc").read_bytes() != rescodec.encode(src, quality=20)
    src.save(tmp_path / "d.rsc", quality=20, speed=8, lr_speed=None)   # None: not given
    assert (tmp_path / "d.rsc").read_bytes() == (tmp_path / "a.rsc").read_bytes()
    src.save(tmp_path / "e.rsc", quality=20, speed=None, lr_speed=8)   # refused as both given
    assert (tmp_path / "e.rsc").read_bytes() == (tmp_path / "a.rsc").read_bytes()
    with pytest.raises(ValueError, match="speed or lr_speed"):
        src.save(tmp_path / "b.rsc", speed=8, lr_speed=2)
    with pytest.raises(ValueError, match="AVIF speed must be"):
        src.save(tmp_path / "c.rsc", speed=11)
    with pytest.raises(ValueError, match=r"unknown encode option\(s\): sped \(known: .*, speed, temperature"):
        src.save(tmp_path / "f.rsc", sped=8)   # the options a save takes, speed among them


def test_save_passes_the_lr_step(tmp_path):
    src = Image.fromarray(gradient_image(48, 32))
    src.save(tmp_path / "q.rsc", scale=4, lr_step=5)
    with Image.open(tmp_path / "q.rsc") as im:
        assert im.info["lr_step"] == 5


def test_rgba_round_trip(tmp_path):
    src = Image.fromarray(gradient_image(16, 16)).convert("RGBA")
    src.putalpha(77)
    out = tmp_path / "a.rsc"
    src.save(out, scale=2)
    with Image.open(out) as im:
        assert im.mode == "RGBA" and np.asarray(im)[..., 3].min() == 77


def test_thumbnail_takes_the_small_picture_without_the_network(tmp_path, monkeypatch):
    """Image.thumbnail() asks draft() for twice its box: where that fits in
    the small picture (here 28x20 of an x2 file of 56x40: a box of 10), the image is that
    picture, and the network does not run; otherwise, and for x1 or alpha,
    the full decode."""
    from rescodec import codec
    img = gradient_image(40, 56)
    path = tmp_path / "g.rsc"
    path.write_bytes(rescodec.encode(img, scale=2, lr_quality=60))
    full = np.asarray(rescodec.decode(path))
    real = codec.decode_array

    def no_network(*a, **k):
        raise AssertionError("the network ran")
    monkeypatch.setattr(codec, "decode_array", no_network)
    with Image.open(path) as im:
        im.thumbnail((10, 10))
        assert im.size == (10, 7) and im.mode == "RGB"
        small = np.asarray(im)
    expect = np.asarray(Image.fromarray(full).resize((10, 7), Image.Resampling.BICUBIC, reducing_gap=2.0))
    assert np.abs(small.astype(int) - expect).mean() < 8   # 4.3; a pixel off would be ~30
    with Image.open(path) as im:
        assert im.draft(None, (29, 20)) is None and im.draft(None, (28, 20)) == ("RGB", (0, 0, 28.0, 20.0))
        assert im.size == (28, 20) and im.draft(None, (10, 10)) is None   # once only
        assert np.array_equal(np.asarray(im.convert("RGB")), codec.thumbnail(path.read_bytes()))
    monkeypatch.setattr(codec, "decode_array", real)
    rgba = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
    # -s 8's small picture is the lossless flow's own, blurred: not a thumbnail
    for data in (rescodec.encode(img, scale=1, lr_quality=60), rescodec.encode(rgba, scale=2, lr_quality=60),
                 rescodec.encode(gradient_image(80, 112), scale=8)):
        with Image.open(io.BytesIO(data)) as im:
            assert im.draft(None, (8, 8)) is None
            im.thumbnail((8, 8))
            assert max(im.size) == 8


def test_open_reads_no_more_than_a_file_of_its_size_takes(rsc_file):
    """Image.open read the whole stream before any check."""
    from rescodec import container
    from conftest import Stream
    endless = Stream(rsc_file.read_bytes(), 1 << 26)
    with pytest.raises(RscError, match="more than a file of 56x40 pixels takes"):
        Image.open(endless)
    assert endless.read_to <= 56 * 40 * container.MAX_BYTES_PER_PIXEL + container.MAX_FILE_OVERHEAD + 1


def test_pillows_parser_takes_an_rsc_fed_in_chunks(rsc_file):
    """Django's get_image_dimensions feeds ImageFile.Parser 1 KB at a time and
    catches only OSError-like errors: a truncated file was a bare ValueError,
    and close() failed in the decoder."""
    from PIL import ImageFile
    from rescodec.errors import CorruptError, TruncatedError
    data = rsc_file.read_bytes()
    parser = ImageFile.Parser()
    for i in range(0, len(data), 64):
        parser.feed(data[i:i + 64])
        assert (parser.image is not None) == (i + 64 >= len(data))
    im = parser.close()
    assert im.size == (56, 40) and np.array_equal(np.asarray(im), np.asarray(rescodec.decode(data)))
    for n in (5, 30, len(data) - 1):   # still the documented type, and the one Pillow's formats raise
        with pytest.raises(TruncatedError) as e:
            Image.open(io.BytesIO(data[:n]))
        assert isinstance(e.value, OSError)
    damaged = data[:-1] + bytes([data[-1] ^ 0xFF])   # the file's CRC
    with pytest.raises(CorruptError) as e:   # an OSError as Pillow's formats raise: it escaped
        Image.open(io.BytesIO(damaged))      # `except OSError` and Django's get_image_dimensions
    assert isinstance(e.value, OSError)
    parser = ImageFile.Parser()
    for i in range(0, len(damaged), 64):
        parser.feed(damaged[i:i + 64])       # raised CorruptError at the last chunk
    assert parser.image is None
    with pytest.raises(OSError):
        parser.close()


def test_damage_found_at_load_and_a_missing_model_are_oserrors(rsc_file, monkeypatch):
    """Pillow's users catch OSError; the damaged picture inside a file that
    opens is found at load(), as with Pillow's own formats."""
    from rescodec import container, weights
    from rescodec.errors import CorruptError, WeightsError
    data = rsc_file.read_bytes()
    f = container.unpack(data, names=weights.name_for_hash)
    lr = f.sections[container.SECTION_LR]
    assert lr[2:4] == b"\x12\x00" and lr[4] >> 3 & 15 == 1   # a temporal delimiter, the sequence header
    bad_lr = container.pack(f.header, lr[:6 + lr[5]], f.sections[container.SECTION_MASK])   # no frame
    with Image.open(io.BytesIO(bad_lr)) as im:
        with pytest.raises(CorruptError) as e:
            im.load()
    assert isinstance(e.value, OSError)
    monkeypatch.setattr(weights, "hash_prefix", lambda name: bytes(8))
    with Image.open(rsc_file) as im, pytest.raises(WeightsError) as e:
        im.load()
    assert isinstance(e.value, OSError)


def test_pillows_pixel_limit_is_the_plugins(rsc_file, monkeypatch):
    """rescodec's own 2^27 limit, which Image.open gave no way to raise, gave
    way to Pillow's Image.MAX_IMAGE_PIXELS, which Image.open applies to every
    format (a warning above it, an error above twice it; None: no limit)."""
    import dataclasses
    import warnings
    from rescodec import container, weights
    f = container.unpack(rsc_file.read_bytes(), names=weights.name_for_hash)
    big, bigger = (container.pack(dataclasses.replace(f.header, width=n, height=n), *f.sections.values())
                   for n in (12000, 14000))   # 144 and 196 MP: over 2^27, and over twice Pillow's 89.5 MP
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bigger))
    from conftest import Stream
    endless = Stream(bigger[:64], 1 << 32)   # refused on its header: nothing more read
    with pytest.raises(Image.DecompressionBombError):
        Image.open(endless)
    assert endless.read_to <= 64
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(big)).close()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 0)   # max_pixels 0 was a bare ValueError
    with pytest.raises((OSError, Image.DecompressionBombError)):
        Image.open(io.BytesIO(rsc_file.read_bytes()[:8]))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(io.BytesIO(big)) as im:
            assert im.size == (12000, 12000)
            with pytest.raises(RscError):
                im.load()   # the small picture is not 3000x3000: the file is damaged, not too large


def test_save_refuses_metadata_that_is_not_bytes():
    """As Pillow's own savers do; bytes(4) stored four zero bytes."""
    import io
    im = Image.new("RGB", (16, 16))
    for kw in ({"icc_profile": 4}, {"xmp": [1, 2]}, {"icc_profile": True}):
        with pytest.raises(TypeError, match="must be bytes"):
            im.save(io.BytesIO(), "RSC", quality=20, **kw)

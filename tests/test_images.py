import numpy as np
import pytest
from PIL import Image

from rescodec import images
from rescodec.errors import ImageInputError


def test_array_uint16_is_reduced_with_notice():
    pic = images.load(np.full((4, 4, 3), 65535, np.uint16))
    assert pic.rgb.dtype == np.uint8 and pic.rgb.max() == 255 and pic.notices


def test_integer_arrays_are_read_as_pillows_modes_read_them():
    """A big-endian uint16 array (numpy's ">u2", as from a file) was taken
    for 0..255 and refused, and an int32 array of 16-bit values was refused
    where the same pixels as a PIL image of mode I were read."""
    g = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    want = images.load(Image.fromarray(g.astype(np.int32), "I")).rgb
    for a in (g, g.astype(">u2"), g.astype(np.int32), g.astype(np.uint32), g.astype(np.int64)):
        pic = images.load(a)
        assert np.array_equal(pic.rgb, want) and pic.notices, a.dtype
    small = images.load(np.arange(64, dtype=np.int32).reshape(8, 8))   # 0..255: as uint8, no note
    assert np.array_equal(small.rgb[..., 0], np.arange(64).reshape(8, 8)) and not small.notices
    with pytest.raises(ImageInputError, match="negative"):
        images.load(np.full((4, 4), -1, np.int16))


def test_float_array_in_unit_range():
    pic = images.load(np.full((4, 4, 3), 0.5, np.float32))
    assert pic.rgb[0, 0, 0] == 128


@pytest.mark.parametrize("shape", [(4, 4, 5), (0, 3, 3), (2,)])
def test_bad_array_shapes(shape):
    with pytest.raises(ImageInputError):
        images.load(np.zeros(shape, np.uint8))


def test_cmyk_becomes_rgb():
    pic = images.load(Image.new("CMYK", (5, 3), (0, 255, 0, 0)))
    assert pic.mode == "RGB" and pic.rgb.shape == (3, 5, 3)


def test_sixteen_bit_grey_png(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.full((3, 3), 40000, np.uint16)).save(path)
    pic = images.load(path)
    assert pic.mode == "L" and pic.notices and pic.rgb[0, 0, 0] == round(40000 * 255 / 65535)


@pytest.mark.parametrize("frames", [1, 3])
def test_only_the_first_frame_is_coded_and_said(tmp_path, frames):
    path = tmp_path / "a.gif"
    pics = [Image.new("RGB", (6, 4), (80 * i, 0, 0)) for i in range(frames)]
    pics[0].save(path, save_all=True, append_images=pics[1:])
    pic = images.load(path)
    assert pic.rgb[0, 0, 0] == 0 and pic.rgb.shape == (4, 6, 3)
    said = [n for n in pic.notices if "frames" in n]
    assert said == ([f"{frames} frames: only the first is coded"] if frames > 1 else [])


def test_sixteen_bit_rgb_tiff_gets_a_notice(tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    path = tmp_path / "rgb16.tif"
    path.write_bytes(imagecodecs.tiff_encode(np.full((4, 5, 3), 40000, np.uint16)))
    pic = images.load(path)
    assert pic.rgb.shape == (4, 5, 3) and "16-bit TIFF converted to 8-bit" in pic.notices


def test_a_phone_mpo_is_not_called_an_animation(tmp_path):
    path = tmp_path / "a.mpo"
    Image.new("RGB", (6, 4)).save(path, "MPO", save_all=True, append_images=[Image.new("RGB", (6, 4))])
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert not [n for n in images.load(path).notices if "frames" in n]


def test_to_pil_modes():
    rgb = np.zeros((2, 2, 3), np.uint8)
    a = np.full((2, 2), 7, np.uint8)
    assert images.to_pil(rgb, None, "L").mode == "L"
    assert images.to_pil(rgb, a, "RGBA").mode == "RGBA"
    assert images.to_pil(rgb, a, "LA").mode == "LA"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels."""
    import struct
    import zlib
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # grey: what Pillow allocates is small
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(16)))
            + chunk(b"IEND", b""))


RAISE = "(raise it with --max-pixels, or max_pixels=)"


@pytest.mark.parametrize("side,limit,said", [
    (12000, None, f"12000x12000 is over the limit of 134217728 pixels {RAISE}"),
    (20000, None, f"image of 400000000 pixels is over the limit of 134217728 pixels {RAISE}"),
    (20000, 300_000_000, f"20000x20000 is over the limit of 300000000 pixels {RAISE}"),
    (20000, 500_000_000, "unreadable image: image file is truncated (0 bytes not processed)"),
    (12000, 150_000_000, "unreadable image: image file is truncated (0 bytes not processed)"),
    (9500, None, "unreadable image: image file is truncated (0 bytes not processed)")])
def test_big_or_broken_files_are_one_clear_error(tmp_path, recwarn, side, limit, said):
    """rescodec's own pixel limit, which max_pixels raises past Pillow's
    (whose bomb warning is not printed, and whose error is said as
    rescodec's); a truncated file says what Pillow says."""
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(side, side))
    for src, name in ((path, str(path)), (path.read_bytes(), "<image data>")):
        with pytest.raises(ImageInputError) as e:
            images.load(src, **({"max_pixels": limit} if limit else {}))
        assert str(e.value) == f"{name}: {said}"
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == 89478485   # Pillow's own, as it was


def test_image_file_data_and_file_objects_load_as_the_file(tmp_path):
    import io
    import os
    path = tmp_path / "a.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(path)
    ref = images.load(path).rgb
    assert np.array_equal(images.load(path.read_bytes()).rgb, ref)
    with open(path, "rb") as f:
        assert np.array_equal(images.load(f).rgb, ref)
    with pytest.raises(ImageInputError, match="<image data>: empty file"):
        images.load(io.BytesIO())
    r, w = os.pipe()   # a stream that cannot seek, named by a descriptor
    os.write(w, path.read_bytes())
    os.close(w)
    with open(r, "rb") as f:
        assert np.array_equal(images.load(f).rgb, ref)
    with open(path, "rb") as f:
        f.seek(0, 2)
        with pytest.raises(ImageInputError, match=f"^{path}: empty file$"):
            images.load(f)
    with open(path) as f, pytest.raises(TypeError, match="open it in binary mode"):
        images.load(f)
    with pytest.raises(ImageInputError, match="<image data>: not an image rescodec can read"):
        images.load(b"hello")


def test_an_rsc_input_is_said_to_be_coded_again(tmp_path):
    import rescodec
    path = tmp_path / "a.rsc"
    path.write_bytes(rescodec.encode(np.zeros((8, 8, 3), np.uint8), scale=4))
    assert "an .rsc input: decoded, then coded again" in images.load(path).notices


@pytest.mark.parametrize("mode,stored", [("La", "LA"), ("RGBa", "RGBA"), ("LAB", "RGB"), ("HSV", "RGB"),
                                         ("YCbCr", "RGB")])
def test_other_modes_map_to_the_stored_four(mode, stored):
    """LAB's A is a colour channel, not alpha; premultiplied alpha is alpha."""
    pic = images.load(Image.new(mode, (4, 3)))
    assert pic.mode == stored and (pic.alpha is not None) == stored.endswith("A")


@pytest.mark.parametrize("mode,key,stored", [("RGB", (255, 255, 255), "RGBA"), ("L", 0, "LA"),
                                             ("I;16", 0, "LA")])
def test_a_transparent_colour_becomes_alpha(tmp_path, mode, key, stored):
    """PNG's tRNS in an RGB or grey image: that colour is transparent."""
    im = Image.new(mode, (8, 6), key)
    im.paste((200, 30, 30) if mode == "RGB" else 100, (2, 2, 6, 4))
    im.save(tmp_path / "t.png", transparency=key)
    pic = images.load(tmp_path / "t.png")
    assert pic.mode == stored and pic.alpha[0, 0] == 0 and pic.alpha[3, 3] == 255


def test_the_current_frame_of_an_image_in_memory_is_coded_and_said(tmp_path):
    pics = [Image.new("RGB", (6, 4), (80 * i, 0, 0)) for i in range(4)]
    pics[0].save(tmp_path / "a.gif", save_all=True, append_images=pics[1:])
    with Image.open(tmp_path / "a.gif") as im:
        im.seek(2)
        pic = images.load(im)
    assert pic.rgb[0, 0, 0] > 100 and "4 frames: only frame 3, the current one, is coded" in pic.notices


@pytest.mark.parametrize("mode,values,grey,said", [
    ("I", (1000, 30000), (4, 117), "32-bit image converted to 8-bit"),
    ("I", (35000, 70000), (128, 255), "32-bit image of values up to 70000 scaled to 8-bit by its peak"),
    ("F", (0.5, 1.2), (128, 255), "floating-point image converted to 8-bit, values above 1 clipped"),
    ("F", (100.0, 200.0), (100, 200), "floating-point image converted to 8-bit"),
    ("F", (500.0, 2000.0), (64, 255), "floating-point image of values up to 2000 scaled to 8-bit by its peak")])
def test_deep_images_keep_their_picture(mode, values, grey, said):
    """A linear or HDR float image's highlights above 1 are clipped, not read
    as 0..255 (which made it black); a range past its type's is scaled."""
    im = Image.new(mode, (4, 2), values[0])
    im.paste(values[1], (2, 0, 4, 2))
    pic = images.load(im)
    assert (pic.rgb[0, 0, 0], pic.rgb[0, 3, 0]) == grey and pic.notices == [said]
    if mode == "F":   # a float array reads alike
        arr = images.load(np.asarray(im, np.float32))
        assert (arr.rgb[0, 0, 0], arr.rgb[0, 3, 0]) == grey and arr.notices == [said]


def test_nan_is_refused_in_images_as_in_arrays():
    im = Image.new("F", (4, 2), 0.5)
    im.putpixel((1, 1), float("nan"))
    for src in (im, np.asarray(im)):
        with pytest.raises(ImageInputError, match="NaN or infinite"):
            images.load(src)


@pytest.mark.parametrize("dtype", [complex, object, "U3"])
def test_arrays_of_other_than_numbers_are_refused(dtype):
    with pytest.raises(ImageInputError, match="is not an image"):
        images.load(np.zeros((4, 4), dtype))


@pytest.mark.parametrize("fmt", ["AVIF", "TIFF", "JPEG"])
def test_damaged_files_of_every_format_are_image_input_errors(fmt, recwarn):
    """Pillow's readers raise RuntimeError (AVIF), TypeError (TIFF) and more
    on damaged data; each is one ImageInputError.  What Pillow warns becomes
    a note, not a warning printed with its source line."""
    import io
    import random
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), np.uint8)).save(buf, fmt)
    good, rng, said = buf.getvalue(), random.Random(1), 0
    for _ in range(60):
        bad = bytearray(good)
        for _ in range(3):   # in the headers, where the readers' checks are
            bad[rng.randrange(min(len(bad), 200))] = rng.randrange(256)
        try:
            images.load(bytes(bad))
        except ImageInputError as e:
            said += str(e).startswith("<image data>: ")
    assert said > 5 and not recwarn.list


def test_a_jpeg_with_a_broken_exif_loads_with_a_note_and_no_warning(recwarn):
    import io
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x1a")
    pic = images.load(buf.getvalue())
    assert "EXIF left out: unreadable" in pic.notices and not recwarn.list


def _grey_png_with_key(bits: int, rows, key: int) -> bytes:
    """A grey PNG of `bits` bits a pixel with a tRNS grey level, by hand."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b""
    for row in rows:
        line = "".join(format(v, f"0{bits}b") for v in row)
        line += "0" * (-len(line) % 8)
        raw += b"\0" + int(line, 2).to_bytes(len(line) // 8, "big")
    ihdr = struct.pack(">IIBBBBB", len(rows[0]), len(rows), bits, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tRNS", struct.pack(">H", key))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_a_grey_pngs_transparent_level_at_any_depth(bits):
    """Pillow scales 2- and 4-bit grey to 0..255 but not the tRNS level."""
    top = 2 ** bits - 1
    pic = images.load(_grey_png_with_key(bits, [[top, 0, top, 0], [0, 0, top, top]], top))
    assert pic.mode == "LA" and pic.alpha.tolist() == [[0, 255, 0, 255], [255, 255, 0, 0]]


def test_a_transparent_colour_that_no_pixel_has_adds_no_alpha(tmp_path):
    Image.new("RGB", (4, 4), "red").save(tmp_path / "k.png", transparency=(0, 0, 255))
    Image.new("I;16", (4, 4), 900).save(tmp_path / "k16.png", transparency=7)
    assert images.load(tmp_path / "k.png").mode == "RGB" and images.load(tmp_path / "k16.png").mode == "L"


def test_pillows_limit_is_raised_per_read_and_restored_across_threads(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # an error past 200 pixels
    Image.new("RGB", (30, 30)).save(tmp_path / "a.png")     # 900
    with pytest.raises(ImageInputError, match="over the limit of 500 pixels"):
        images.load(tmp_path / "a.png", max_pixels=500)
    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(lambda _: images.load(tmp_path / "a.png", max_pixels=1000).rgb.shape, range(40)))
    assert shapes == [(30, 30, 3)] * 40 and Image.MAX_IMAGE_PIXELS == 100


def test_a_small_palettes_transparent_entry_stays_transparent():
    """A 2-bit palette PNG's tRNS is a palette index, not a grey level."""
    import io
    im = Image.new("P", (4, 1))
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.putdata([0, 1, 2, 3])
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=1, bits=2)
    pic = images.load(buf.getvalue())
    assert pic.mode == "RGBA" and pic.alpha.tolist() == [[255, 0, 255, 255]]


@pytest.mark.parametrize("key,alpha", [((200 * 257, 100 * 257, 50 * 257), [[0, 255]]), ((200, 100, 50), None)])
def test_a_16_bit_rgb_pngs_transparent_colour(key, alpha):
    """Pillow reads 16-bit RGB as its high bytes but keeps the 16-bit key: a
    key of 8-bit values scaled by 257 is one of them, any other none."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"\0" + struct.pack(">6H", 200 * 257, 100 * 257, 50 * 257, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
           + chunk(b"tRNS", struct.pack(">3H", *key)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    pic = images.load(png)
    assert (pic.alpha.tolist() if pic.alpha is not None else None) == alpha


def test_rescodecs_own_errors_are_not_called_unreadable_images(tmp_path, monkeypatch):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    monkeypatch.setattr(images, "_from_pil", lambda *a, **k: None + 1)   # a TypeError of rescodec's
    with pytest.raises(TypeError):
        images.load(tmp_path / "a.png")


def test_reads_in_threads_leave_the_programs_warnings_as_they_were(tmp_path):
    """catch_warnings swaps process-wide state: rescodec's blocks overlapping
    in threads left the filters and showwarning changed for good, and every
    later warning of the program went to a list nobody reads."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor
    import rescodec
    from rescodec import lossless, lossy_lr
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "maker"
    Image.fromarray(rgb).save(tmp_path / "e.png", exif=exif)
    png, avif = lossless.encode(rgb, codecs=(lossless.PNG,)), lossy_lr.encode(rgb, 50, speed=9)
    rsc = rescodec.encode(tmp_path / "e.png", scale=4)
    jobs = [lambda: images.load(tmp_path / "e.png"), lambda: lossless.decode(png, rgb.shape, "LR"),
            lambda: lossy_lr.decode(avif, rgb.shape), lambda: images.load(Image.fromarray(rgb))] * 4 \
        + [lambda: rescodec.encode(tmp_path / "e.png", scale=4), lambda: rescodec.decode(rsc)] * 2
    shown = []
    with warnings.catch_warnings():   # the program's own state, which rescodec must leave alone
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kw: shown.append(str(message))
        before = (list(warnings.filters), warnings.showwarning)
        for _ in range(6):
            with ThreadPoolExecutor(8) as pool:
                assert all(r is not None for r in pool.map(lambda job: job(), jobs))
            assert (warnings.filters, warnings.showwarning) == before
        warnings.warn("still shown")
    assert shown == ["still shown"]


def test_a_transparent_colour_made_alpha_is_said(tmp_path):
    """The README: each conversion says so in a note; a key no pixel has adds no alpha, and no note."""
    im = Image.new("RGB", (4, 4), (0, 0, 0))
    im.paste((9, 9, 9), (0, 0, 2, 2))
    im.save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    im.convert("P").save(tmp_path / "p.png", transparency=0)
    Image.new("RGB", (4, 4), "red").save(tmp_path / "unused.png", transparency=(0, 0, 255))
    for name in ("rgb.png", "p.png"):
        pic = images.load(tmp_path / name)
        assert pic.mode == "RGBA" and [n for n in pic.notices if "alpha channel" in n], (name, pic.notices)
    pic = images.load(tmp_path / "unused.png")
    assert pic.mode == "RGB" and not pic.notices


def test_a_damaged_pil_image_is_an_input_error():
    """Pillow reads a PIL image's file lazily: a truncated PNG opened by the
    caller raised a bare OSError from inside the encoder."""
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageInputError, match="<PIL image>: unreadable image"):
        images.load(Image.open(io.BytesIO(buf.getvalue()[:len(buf.getvalue()) // 2])))


def test_metadata_that_is_not_bytes_is_refused_not_stored_as_zeros():
    """bytes(4) is four zero bytes: icc_profile=4 was stored as such."""
    im = Image.new("RGB", (8, 8))
    im.info["icc_profile"] = 4
    with pytest.raises(TypeError, match="icc_profile must be bytes, got int"):
        images.load(im)
    im.info["icc_profile"], im.info["xmp"] = b"", "<x/>"   # text XMP, as PNG's, is kept
    assert images.load(im).metadata == {"xmp": b"<x/>"}


def test_a_palette_transparency_no_pixel_uses_adds_no_alpha():
    """As for a colour key: an all-opaque alpha channel only cost bytes."""
    p = Image.new("P", (8, 8), 3)
    p.info["transparency"] = 7
    pic = images.load(p)
    assert pic.alpha is None and pic.mode == "RGB" and pic.notices == []
    p.putpixel((0, 0), 7)
    pic = images.load(p)
    assert pic.alpha is not None and pic.alpha[0, 0] == 0 and pic.mode == "RGBA"


def test_an_rgba_palettes_transparency_becomes_alpha():
    """quantize() of an RGBA image keeps its alpha in the palette, not in
    info["transparency"], and the file came out RGB without a word."""
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0], a[:, 8:, 3] = 200, 255
    q = Image.fromarray(a, "RGBA").quantize(4)
    assert q.mode == "P" and "transparency" not in q.info
    pic = images.load(q)
    assert pic.mode == "RGBA" and pic.alpha[0, 0] == 0 and pic.alpha[0, 15] == 255
    assert pic.notices == ["its palette's transparency became an alpha channel"]
    opaque = Image.fromarray(a[..., :3], "RGB").quantize(4)
    assert images.load(opaque).mode == "RGB"


def test_deep_pnm_files_say_their_depth(tmp_path):
    """A 16-bit PPM got no note, and a 16-bit PGM was called 32-bit; Pillow
    scales a PGM of any maxval to 0..65535 and a PPM to 8 bits."""
    a = (np.arange(32 * 48).reshape(32, 48) * 40 % 65536).astype(">u2")
    (tmp_path / "a.pgm").write_bytes(b"P5\n# a comment\n48 32\n65535\n" + a.tobytes())
    (tmp_path / "a.ppm").write_bytes(b"P6\n48 32\n65535\n" + np.dstack([a, a, a]).astype(">u2").tobytes())
    (tmp_path / "b.pgm").write_bytes(b"P5\n48 32\n4095\n" + (a // 16).astype(">u2").tobytes())
    for name, said in (("a.pgm", "16-bit PGM converted to 8-bit"), ("a.ppm", "16-bit PPM converted to 8-bit"),
                       ("b.pgm", "12-bit PGM converted to 8-bit")):
        pic = images.load(tmp_path / name)
        assert pic.notices == [said], name
        assert np.abs(pic.rgb[..., 0].astype(int) - np.round(a / 257)).max() <= 1 + 15 * (name == "b.pgm"), name


def test_negative_integer_images_are_refused_and_clipped_floats_said(tmp_path):
    """A uint32 TIFF over 2^31 (which Pillow reads as negative int32) came out
    half black, and a signed one's negative half clipped, in silence; a
    float image's values below 0 were clipped without a word."""
    import tifffile
    tifffile.imwrite(tmp_path / "u32.tif", np.tile(np.linspace(0, 2 ** 32 - 1, 64).astype(np.uint32), (8, 1)))
    tifffile.imwrite(tmp_path / "s16.tif", np.tile(np.linspace(-1000, 1000, 64).astype(np.int16), (8, 1)))
    tifffile.imwrite(tmp_path / "f.tif", np.tile(np.linspace(-0.5, 0.9, 64).astype(np.float32), (8, 1)))
    for name in ("u32.tif", "s16.tif"):
        with pytest.raises(ImageInputError, match="negative values"):
            images.load(tmp_path / name)
    assert images.load(tmp_path / "f.tif").notices == ["floating-point image converted to 8-bit, values below 0 clipped"]


def test_a_16_bit_grey_and_alpha_png_stays_grey(tmp_path):
    """Pillow reads a 16-bit grey + alpha PNG as RGBA: it came back RGBA."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    g = np.tile(np.arange(32, dtype=np.uint16) * 2000, (16, 1))
    raw = b"".join(b"\0" + np.dstack([g, g[:, ::-1]])[y].astype(">u2").tobytes() for y in range(16))
    (tmp_path / "la.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 16, 16, 4, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    pic = images.load(tmp_path / "la.png")
    assert pic.mode == "LA" and np.abs(pic.alpha.astype(int) - g[:, ::-1] / 257).max() <= 1   # Pillow's high bytes

"""EXIF, ICC profile and XMP survive encode and decode (the container's
metadata section, flags bit 7): the orientation goes into the pixels and the
Orientation tag becomes 1."""
import io
import struct
import tracemalloc

import numpy as np
import pytest
import zstandard
from PIL import Image, ImageCms, PngImagePlugin

import rescodec
from rescodec import codec, container, images
from rescodec.settings import EncodeSettings
from rescodec.container import SECTION_MASK, Header, pack, pack_metadata, unpack, unpack_metadata
from rescodec.errors import CorruptError, LimitError, RscError, TruncatedError

from conftest import as_legacy, as_version, gradient_image, random_flips

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>')
MAKE, ORIENTATION = 0x010F, 0x0112


def _exif(orientation=6):
    ex = Image.Exif()
    ex[ORIENTATION] = orientation
    ex[MAKE] = "RescodecTest"
    return ex.tobytes()


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    """48 rows x 64 columns as stored, shown 64 x 48 (Orientation 6: turn 90 degrees clockwise)."""
    path = tmp_path_factory.mktemp("meta") / "photo.jpg"
    Image.fromarray(gradient_image(48, 64)).save(path, quality=95, exif=_exif(6), icc_profile=ICC,
                                                 xmp=XMP)
    return path


@pytest.fixture(scope="module", params=["lossless", "avif"])
def encoded(request, jpeg):
    return rescodec.encode(jpeg, scale=4, lr_codec=request.param)


def test_load_turns_pixels_upright_and_keeps_metadata(jpeg):
    pic = images.load(jpeg)
    assert pic.rgb.shape == (64, 48, 3)
    assert set(pic.metadata) == {"exif", "icc_profile", "xmp"}
    ex = Image.Exif()
    ex.load(pic.metadata["exif"])
    assert ex[ORIENTATION] == 1 and ex[MAKE] == "RescodecTest"
    assert pic.metadata["exif"].startswith(b"Exif\x00\x00")
    assert pic.metadata["icc_profile"] == ICC and pic.metadata["xmp"] == XMP


def test_round_trip(encoded, jpeg):
    f = unpack(encoded)
    assert f.header.has_metadata and encoded[5] & 0x80 and f.header.version == 7
    newest = f.header.lr_codec == "avif" or f.sections[SECTION_MASK] == b"\x02"   # AV1 LR, empty mask
    assert unpack(as_legacy(encoded)).header.version == (6 if newest else 5)
    assert list(f.sizes) == ["header", "LR", "mask", "metadata"]
    im = rescodec.decode(encoded)
    assert im.size == (48, 64)                               # width and height swapped
    assert im.getexif()[ORIENTATION] == 1 and im.getexif()[MAKE] == "RescodecTest"
    assert im.info["icc_profile"] == ICC and im.info["xmp"] == XMP
    assert codec.metadata(encoded) == {k: im.info[k] for k in ("exif", "icc_profile", "xmp")}
    assert codec.info(encoded)["metadata"] == {"exif": len(im.info["exif"]), "icc_profile": len(ICC),
                                               "xmp": len(XMP)}
    # turned the way the EXIF says: nearer the upright source than to it turned round
    with Image.open(jpeg) as src:
        upright = np.asarray(src.transpose(Image.Transpose.ROTATE_270), np.float32)
    out = np.asarray(im, np.float32)
    assert np.abs(out - upright).mean() < np.abs(out - upright[::-1, ::-1]).mean() / 2


def test_decode_array_is_unchanged(encoded):
    rgb, alpha, hd = codec.decode_array(encoded)
    assert rgb.shape == (64, 48, 3) and alpha is None and hd.has_metadata


def test_pillow_plugin_exposes_metadata(encoded, tmp_path):
    path = tmp_path / "x.rsc"
    path.write_bytes(encoded)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == ICC and im.info["xmp"] == XMP
        assert im.getexif()[MAKE] == "RescodecTest"


def test_pillow_save_keeps_info_and_takes_keywords(jpeg, tmp_path):
    with Image.open(jpeg) as src:
        src.save(tmp_path / "a.rsc", scale=4, lr_codec="lossless")
        src.save(tmp_path / "b.rsc", scale=4, lr_codec="lossless", exif=b"", xmp="<x/>")
    kept = codec.metadata((tmp_path / "a.rsc").read_bytes())
    assert kept["icc_profile"] == ICC and kept["xmp"] == XMP and "exif" in kept
    assert codec.metadata((tmp_path / "b.rsc").read_bytes()) == {"icc_profile": ICC, "xmp": b"<x/>"}


def test_metadata_option_keeps_what_it_names(jpeg, tmp_path):
    """--metadata (cwebp's -metadata): a web page's copy need not carry the
    camera's EXIF, its GPS position included; the pixels stay upright."""
    kept = {m: codec.metadata(rescodec.encode(jpeg, scale=4, metadata=m))
            for m in ("all", "none", "icc", "exif,xmp")}
    assert set(kept["all"]) == {"exif", "icc_profile", "xmp"} and kept["none"] == {}
    assert kept["icc"] == {"icc_profile": ICC}
    assert set(kept["exif,xmp"]) == {"exif", "xmp"} and kept["exif,xmp"]["xmp"] == XMP
    bare = rescodec.encode(jpeg, scale=4, metadata="none")
    assert not unpack(bare).header.has_metadata and rescodec.decode(bare).size == (48, 64)
    for bad in ("", "gps", "icc,", "ICC", None, ["exif"]):
        with pytest.raises(ValueError, match="metadata must be all, none, or a comma list"):
            EncodeSettings(metadata=bad).validate()
    with Image.open(jpeg) as src:   # the Pillow plugin passes it on
        src.save(tmp_path / "p.rsc", scale=4, metadata="icc")
    assert codec.metadata((tmp_path / "p.rsc").read_bytes()) == {"icc_profile": ICC}


def test_array_input_has_no_metadata():
    im = gradient_image(24, 40)
    assert images.load(im).metadata == {}
    data = rescodec.encode(im, scale=4, lr_codec="lossless")
    assert not data[5] & 0x80 and "metadata" not in unpack(data).sizes
    assert codec.metadata(data) == {} and codec.info(data)["metadata"] == {}
    assert rescodec.decode(data).info == {}


def test_png_xmp_and_webp_exif(tmp_path):
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    Image.fromarray(gradient_image(8, 8)).save(tmp_path / "x.png", pnginfo=text, exif=_exif(1))
    meta = images.load(tmp_path / "x.png").metadata
    assert meta["xmp"] == XMP and meta["exif"] == _exif(1)   # orientation 1: bytes as they were
    Image.fromarray(gradient_image(8, 8)).save(tmp_path / "x.webp", lossless=True, exif=_exif(3))
    pic = images.load(tmp_path / "x.webp")                   # WebP keeps EXIF without "Exif\0\0"
    assert pic.metadata["exif"].startswith(b"Exif\x00\x00")
    ex = Image.Exif()
    ex.load(pic.metadata["exif"])
    assert ex[ORIENTATION] == 1 and ex[MAKE] == "RescodecTest"


def test_icc_of_another_colour_space_is_left_out(tmp_path):
    cmyk = ICC[:16] + b"CMYK" + ICC[20:]
    Image.new("CMYK", (8, 8), (0, 50, 100, 0)).save(tmp_path / "c.jpg", icc_profile=cmyk)
    pic = images.load(tmp_path / "c.jpg")
    assert pic.mode == "RGB" and "icc_profile" not in pic.metadata
    assert any("ICC profile left out" in n for n in pic.notices)


# --- the container section -------------------------------------------------------------

def _header(**kw):
    base = dict(width=33, height=17, mode="RGB", scale=4, mask_bits=2, mask_norm=2,
                mask_threshold=50.0, mask_sigma=1.0, z_seed=1234, z_temperature=0.5,
                weights_hash=bytes(range(8)), model="bdflow-x4-v1")
    return Header(**{**base, **kw})


def _file(meta=None, legacy=False, **kw):
    payload = pack_metadata(meta or {"exif": b"Exif\x00\x00e", "xmp": b"<x/>"})
    return pack(_header(has_metadata=True, **kw), b"\x01lr", b"\x00mask",
                b"\x02alpha" if kw.get("mode") == "RGBA" else None, payload, legacy=legacy)


def _payload(content: bytes, **zstd_options) -> bytes:
    return b"\x00" + zstandard.ZstdCompressor(**zstd_options).compress(content)


def _entry(tag, value):
    return struct.pack("<BI", tag, len(value)) + value


@pytest.mark.parametrize("legacy", [False, True])
def test_container_round_trip_and_version(legacy):
    data = _file(mode="RGBA", legacy=legacy)
    f = unpack(data)
    assert data[4] == (5 if legacy else 7) and data[5] == 0x81
    assert f.header == _header(mode="RGBA", has_metadata=True)
    assert unpack_metadata(f.sections[container.SECTION_METADATA]) == {"exif": b"Exif\x00\x00e",
                                                                        "xmp": b"<x/>"}
    assert _header(has_metadata=True) != _header()


def test_metadata_before_version_5_is_corrupt():
    for version in (1, 2, 3, 4):
        with pytest.raises(CorruptError, match="flags"):
            unpack(as_version(_file(legacy=True), version))


def test_pack_checks_the_flag_and_the_payload():
    with pytest.raises(ValueError, match="metadata section"):
        pack(_header(), b"\x01lr", b"\x00mask", None, pack_metadata({"xmp": b"x"}))
    with pytest.raises(ValueError, match="metadata section"):
        pack(_header(has_metadata=True), b"\x01lr", b"\x00mask")
    with pytest.raises(ValueError):
        pack_metadata({"exif": b""})
    with pytest.raises(ValueError, match="unknown"):
        pack_metadata({"comment": b"x"})


def test_every_truncation_is_a_typed_error():
    data = _file()
    for n in range(len(data)):
        with pytest.raises(TruncatedError):
            unpack(data[:n])


@pytest.mark.parametrize("payload", [
    b"\x01" + zstandard.ZstdCompressor().compress(_entry(1, b"x")),            # codec id
    b"\x00not zstd",
    _payload(_entry(1, b"x"), write_content_size=False),                       # size not recorded
    _payload(b""),
    _payload(_entry(1, b"x")) + b"junk",                                       # after the frame
    _payload(_entry(1, b"x"))[:-3],                                            # frame cut short
    _payload(_entry(1, b"x") + _entry(1, b"y")),                               # tag twice
    _payload(_entry(3, b"x") + _entry(2, b"y")),                               # out of order
    _payload(_entry(9, b"x")),                                                 # unknown tag
    _payload(_entry(1, b"")),                                                  # empty value
    _payload(_entry(1, b"xyz")[:-1]),                                          # length past the end
    _payload(_entry(1, b"x") + b"\x02\x01"),                                   # entry cut short
], ids=["codec", "not-zstd", "no-size", "empty", "trailing", "cut-frame", "twice", "order",
        "unknown-tag", "empty-value", "overrun", "short-entry"])
def test_bad_payloads_are_corrupt(payload):
    with pytest.raises(CorruptError):
        unpack_metadata(payload)


def test_corrupt_section_in_a_file(encoded, tmp_path):
    f = unpack(encoded)
    bad = pack(f.header, f.sections[1], f.sections[2], None, _payload(_entry(7, b"x")))
    with pytest.raises(CorruptError, match="metadata"):
        rescodec.decode(bad)
    with pytest.raises(CorruptError):
        codec.info(bad)
    (tmp_path / "bad.rsc").write_bytes(bad)
    with pytest.raises(RscError):
        Image.open(tmp_path / "bad.rsc")


def test_huge_declared_size_is_refused_without_allocating():
    # a frame header (single segment, 8-byte content size) declaring 1 TiB, then a little data
    frame = b"\x28\xb5\x2f\xfd" + b"\xe0" + struct.pack("<Q", 1 << 40) + bytes(64)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="over the limit"):
            unpack_metadata(b"\x00" + frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_understated_size_is_refused_without_allocating():
    # 8 MiB of zeros whose frame claims 1000 bytes: libzstd stops at the claim
    big = bytearray(zstandard.ZstdCompressor().compress(_entry(1, bytes(8 << 20))))
    fhd = big[4]
    assert fhd >> 6 == 2                              # a 4-byte content size field ...
    at = 5 if fhd & 0x20 else 6                       # ... after the window byte, if any
    big[at:at + 4] = struct.pack("<I", 1000)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptError):
            unpack_metadata(b"\x00" + bytes(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_random_flips_in_the_payload_give_only_typed_errors():
    payload = pack_metadata({"exif": _exif(1), "icc_profile": ICC, "xmp": XMP})
    for d in random_flips(payload, seed=3, count=500):
        try:
            unpack_metadata(d)
        except RscError:
            pass


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".png", ".tif"])
def test_cli_decode_writes_xmp_back(jpeg, tmp_path, suffix):
    from click.testing import CliRunner
    from rescodec import cli
    rsc, out = tmp_path / "p.rsc", tmp_path / f"p{suffix}"
    for args in (["encode", str(jpeg), "-q", "50", "-o", str(rsc)], ["decode", str(rsc), "-o", str(out)]):
        res = CliRunner().invoke(cli.main, args)
        assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        im.load()
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or im.tag_v2.get(700)
        make = im.getexif().get(MAKE)
    assert (xmp.encode() if isinstance(xmp, str) else bytes(xmp)) == XMP
    assert make == "RescodecTest"          # TIFF: the XMP goes beside the EXIF, not in place of it


def test_cli_metadata_option(jpeg, tmp_path):
    from click.testing import CliRunner
    from rescodec import cli
    rsc = tmp_path / "p.rsc"
    res = CliRunner().invoke(cli.main, ["encode", str(jpeg), "-q", "10", "-o", str(rsc), "--metadata", "exif,icc"])
    assert res.exit_code == 0 and set(codec.metadata(rsc.read_bytes())) == {"exif", "icc_profile"}
    res = CliRunner().invoke(cli.main, ["encode", str(jpeg), "-o", str(tmp_path / "q.rsc"), "--metadata", "gps"])
    assert res.exit_code == 2 and not (tmp_path / "q.rsc").exists()
    assert res.stderr.strip() == ("rescodec: error: metadata must be all, none, or a comma list of "
                                  "exif, icc, xmp, got 'gps'")


def test_xmp_too_long_for_jpeg_is_left_out_with_a_note():
    from pathlib import Path
    from rescodec import image_output
    im = Image.new("RGB", (8, 8))
    im.info["xmp"] = b"x" * (image_output.JPEG_MAX_XMP + 1)
    notes = []
    data = image_output.image_bytes(im, Path("a.jpg"), notes)
    assert data[:2] == b"\xff\xd8" and notes == [f"JPEG cannot hold XMP of {image_output.JPEG_MAX_XMP + 1} bytes "
                                                 f"(at most {image_output.JPEG_MAX_XMP}): left out"]


def test_icc_too_long_for_jpeg_is_left_out_with_a_note():
    """Pillow writes an ICC profile as at most 255 APP2 segments and counts
    them in a byte: one more segment wrote a count of 0, and no reader found
    the profile."""
    from pathlib import Path
    from rescodec import image_output
    im = Image.new("RGB", (8, 8))
    icc = bytearray(image_output.JPEG_MAX_ICC)
    icc[16:20] = b"RGB "
    im.info["icc_profile"] = bytes(icc)
    notes = []
    assert Image.open(io.BytesIO(image_output.image_bytes(im, Path("a.jpg"), notes))).info["icc_profile"] == icc
    assert notes == []
    im.info["icc_profile"] = bytes(icc) + b"x"
    data = image_output.image_bytes(im, Path("a.jpg"), notes)
    assert "icc_profile" not in Image.open(io.BytesIO(data)).info and notes == [
        f"JPEG cannot hold an ICC profile of {image_output.JPEG_MAX_ICC + 1} bytes "
        f"(at most {image_output.JPEG_MAX_ICC}): left out"]


def test_cli_decode_to_bmp_says_the_metadata_is_left_out(jpeg, tmp_path):
    from click.testing import CliRunner
    from rescodec import cli
    rsc = tmp_path / "p.rsc"
    assert CliRunner().invoke(cli.main, ["encode", str(jpeg), "-q", "50", "-o", str(rsc)]).exit_code == 0
    res = CliRunner().invoke(cli.main, ["decode", str(rsc), "-o", str(tmp_path / "p.bmp")])
    assert res.exit_code == 0 and "BMP cannot hold metadata: icc_profile, exif, xmp left out" in res.output


def test_a_broken_exif_is_left_out_with_a_note(tmp_path, recwarn):
    """Pillow reads the pixels of a PNG or WebP whose EXIF is garbage, but
    not the EXIF (SyntaxError), or only half of it (a warning, not printed):
    the image is coded without it."""
    img = Image.fromarray(gradient_image(16, 24))
    for name, exif in (("b.png", b"garbage"), ("b.webp", b"garbage"), ("h.png", b"Exif\0\0II*\0\xff\xff\xff\x7f")):
        img.save(tmp_path / name, exif=exif)
        pic = images.load(tmp_path / name)
        assert pic.rgb.shape == (16, 24, 3) and "exif" not in pic.metadata, name
        assert "EXIF left out: unreadable" in pic.notices, name
    assert not [w for w in recwarn if "EXIF" in str(w.message)]
    mem = img.copy()
    mem.info["exif"] = b"garbage"
    enc = codec.encode_ex(mem, EncodeSettings(scale=4, lr_codec="lossless"))
    assert "EXIF left out: unreadable" in enc.notices and codec.metadata(enc.data) == {}


def test_a_pil_image_is_coded_as_it_is(jpeg):
    """In memory, as Pillow's own formats save it: pixels not turned again
    (they may have been already), the EXIF with its orientation as it was."""
    with Image.open(jpeg) as src:
        turned = src.transpose(Image.Transpose.ROTATE_270)   # by hand; its .info keeps Orientation 6
        as_read = src.copy()
    for im in (turned, as_read):
        out = rescodec.decode(rescodec.encode(im, scale=4, lr_codec="lossless"))
        assert out.size == im.size and out.getexif()[ORIENTATION] == 6
        assert np.abs(np.asarray(out, np.float32) - np.asarray(im, np.float32)).mean() < 12
    turned.getexif()[ORIENTATION] = 1   # Pillow's way to say it is upright now
    out = rescodec.decode(rescodec.encode(turned, scale=4, lr_codec="lossless"))
    assert out.size == turned.size and out.getexif()[ORIENTATION] == 1 and out.getexif()[MAKE] == "RescodecTest"


def test_exif_too_long_for_jpeg_is_left_out_with_a_note():
    """JPEG holds an EXIF of one APP1 segment: Pillow refused the save ("EXIF data is too long")."""
    from pathlib import Path
    from rescodec import image_output
    ex = Image.Exif()
    ex[0x010E] = "x" * 70000   # ImageDescription
    im = Image.new("RGB", (8, 8))
    im.info["exif"] = EXIF = b"Exif\0\0" + ex.tobytes()
    notes = []
    with Image.open(io.BytesIO(image_output.image_bytes(im, Path("a.jpg"), notes))) as out:
        assert out.format == "JPEG" and "exif" not in out.info
    assert notes == [f"JPEG cannot hold EXIF of {len(EXIF)} bytes (at most {image_output.JPEG_MAX_EXIF}): left out"]
    notes = []
    with Image.open(io.BytesIO(image_output.image_bytes(im, Path("a.png"), notes))) as out:
        assert out.getexif()[0x010E] == "x" * 70000 and notes == []   # PNG holds it


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg", ".webp"])
def test_a_stored_exif_pillow_cannot_read_is_left_out_at_decode(tmp_path, suffix):
    """A crafted file's: TIFF's writer parses the EXIF, and decode ended in
    "internal error: SyntaxError: not a TIFF file".  Left out with a note, as encode does."""
    from click.testing import CliRunner
    from rescodec import cli
    f = codec.unpack(codec.encode(Image.fromarray(gradient_image(16, 24)), scale=4))
    header = Header(**{**f.header.__dict__, "has_metadata": True})
    for exif in (b"junk", b"Exif\0\0junkjunk"):
        (tmp_path / "e.rsc").write_bytes(pack(header, f.sections[1], f.sections[2], None,
                                              pack_metadata({"exif": exif, "xmp": XMP})))
        out = tmp_path / f"e{suffix}"
        res = CliRunner().invoke(cli.main, ["decode", str(tmp_path / "e.rsc"), "-o", str(out), "-f"])
        assert res.exit_code == 0 and "note: " in res.stderr and "EXIF left out: unreadable" in res.stderr, \
            res.output
        with Image.open(out) as im:   # a TIFF's own tags read as EXIF: its XMP is there, beside them
            assert im.size == (24, 16) and (bytes(im.tag_v2[700]) == XMP if suffix == ".tif" else not im.getexif())


def _phone_exif(size=True):
    """A phone's EXIF: its first IFD holds the picture's size as the camera
    took it (ImageWidth, ImageLength), and an EXIF and a GPS IFD."""
    ex = Image.Exif()
    ex[MAKE], ex[ORIENTATION] = "samsung", 6
    ex[0x011A], ex[0x011B], ex[0x0128] = 300, 300, 2   # 300 dpi
    if size:
        ex[0x0100], ex[0x0101] = 4000, 3000
    ex.get_ifd(0x8769)[0x829A] = (1, 125)         # ExposureTime
    ex.get_ifd(0x8825)[0x0001] = "N"              # GPSLatitudeRef
    return ex


def test_a_tiff_output_has_the_decode_s_size_whatever_the_exif_says(tmp_path):
    """Pillow's TIFF writer took the EXIF's ImageWidth and ImageLength over
    its own: a phone photo decoded to .tif was sheared, or unreadable."""
    from click.testing import CliRunner
    from rescodec import cli
    src, rsc = tmp_path / "phone.jpg", tmp_path / "phone.rsc"
    Image.fromarray(gradient_image(48, 64)).save(src, quality=95, exif=_phone_exif())
    assert CliRunner().invoke(cli.main, ["encode", str(src), "-q", "50", "-o", str(rsc)]).exit_code == 0
    want = np.asarray(codec.decode(rsc.read_bytes()))
    assert want.shape == (64, 48, 3)
    res = CliRunner().invoke(cli.main, ["decode", str(rsc), "-o", str(tmp_path / "back.tif")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "back.tif") as im:
        assert im.size == (48, 64) and np.array_equal(np.asarray(im.convert("RGB")), want)
        ex = im.getexif()
        assert ex[MAKE] == "samsung" and 0x829A in ex.get_ifd(0x8769)   # the EXIF IFD kept
        assert im.info["dpi"] == (300, 300)   # the photo's own resolution


def test_a_tiff_input_keeps_its_exif(tmp_path):
    """Pillow gives a TIFF's EXIF by getexif(), never as info["exif"]: Make,
    the date, the camera's settings and GPS were dropped without a word."""
    src = tmp_path / "scan.tif"
    tags = _phone_exif(size=False)
    tags[0x0132], tags[0x8298] = "2026:12:07 10:00:00", "(c) someone"   # DateTime, Copyright
    Image.fromarray(gradient_image(48, 64)).save(src, exif=tags, icc_profile=ICC, dpi=(300, 300))   # (no IFDs)
    meta = codec.metadata(rescodec.encode(src, quality=50))
    assert set(meta) == {"exif", "icc_profile"}
    ex = Image.Exif()
    ex.load(meta["exif"])
    assert ex[MAKE] == "samsung" and ex[0x0132] == "2026:12:07 10:00:00" and ex[0x8298] == "(c) someone"
    assert ex.get(ORIENTATION, 1) == 1 and 0x0100 not in ex and 0x0111 not in ex   # upright; no strips
    assert ex[0x011A] == 300   # XResolution: the scan's dpi, which a TIFF output writes back
    plain = tmp_path / "plain.tif"   # a TIFF's own tags alone (size, strips, resolution) are no EXIF
    Image.fromarray(gradient_image(48, 64)).save(plain, dpi=(300, 300))
    assert "exif" not in codec.metadata(rescodec.encode(plain, quality=50))


def test_jpeg_and_webp_outputs_keep_what_the_decode_has(tmp_path):
    """JPEG is written 4:4:4 (Pillow's 4:2:0 lost 3-7 dB of a -q 90-100
    decode), and lossless WebP keeps the colour under alpha 0 (exact)."""
    from rescodec import image_output
    rgba = np.dstack([gradient_image(32, 32), np.tile(np.array([0, 255], np.uint8), (32, 16))])
    im = Image.fromarray(rgba, "RGBA")
    back = np.asarray(Image.open(io.BytesIO(image_output.image_bytes(im, tmp_path / "a.webp", []))))
    assert np.array_equal(back, rgba)
    jpg = Image.open(io.BytesIO(image_output.image_bytes(im.convert("RGB"), tmp_path / "a.jpg", [])))
    assert jpg.layer[0][1:3] == (1, 1)   # luma sampled as chroma: 4:4:4
    assert image_output.written_mode(Image.new("LA", (4, 4)), tmp_path / "a.webp") == "RGBA"

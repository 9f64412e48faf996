"""Reading whatever a user hands us into 8-bit RGB (+ alpha): a file the
way a viewer shows it (EXIF orientation applied, the tag then 1), a PIL
image as it is; palettes expanded, 16 bits reduced with a notice, modes
mapped to the four the container stores (L, LA, RGB, RGBA).  The EXIF, ICC
profile and XMP come along as the container's metadata section."""
from __future__ import annotations

import io
import os
import re
import struct
import threading
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import head_gain
from .container import MAX_METADATA, check_max_pixels, read_up_to
from .container import MAX_PIXELS as MAX_INPUT_PIXELS   # one bomb guard for both ends
from .errors import ImageInputError, RscError
from .warnings_lock import caught_warnings


@dataclass
class Picture:
    rgb: np.ndarray                     # (H, W, 3) uint8
    alpha: np.ndarray | None            # (H, W) uint8 or None
    mode: str                           # "L", "LA", "RGB" or "RGBA": what decode returns
    notices: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)   # "exif", "icc_profile", "xmp": bytes

    @cached_property
    def flat_share(self) -> float:
        """head_gain.flat_share of the pixels, counted once: a --psnr search
        or a size target asks it of every candidate file."""
        return head_gain.flat_share(self.rgb)


def _bit_depth(head: bytes, im: Image.Image) -> int | None:
    """Pillow reads 16-bit RGB PNGs, TIFFs and PPMs as 8-bit RGB silently;
    PNG's IHDR and PNM's maxval (in the file's first bytes, `head`) and
    TIFF's BitsPerSample say the truth."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 25:
        return head[24]
    if im.format == "PPM":   # P5/P6 "W H maxval": Pillow scales a deep one to 8 (RGB) or 16 bits (I)
        fields = re.sub(rb"#[^\n]*", b" ", bytes(head[2:])).split()
        return int(fields[2]).bit_length() if len(fields) > 2 and fields[2].isdigit() else None
    bits = getattr(im, "tag_v2", {}).get(TIFF_BITS_PER_SAMPLE)
    if bits:
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return None


ORIENTATION = 0x0112     # the EXIF tag exif_transpose applies
TIFF_BITS_PER_SAMPLE = 258
EXIF_HEAD = b"Exif\x00\x00"   # JPEG's APP1 prefix; WebP's EXIF comes without it
KEY_TO_ALPHA = "its transparent colour became an alpha channel"
_PILLOW_LIMIT = threading.Lock()   # Image.MAX_IMAGE_PIXELS is one global: pillow_limit
_raised = {"count": 0, "saved": None}   # reads running at a raised limit, and Pillow's own


EXIF_ERRORS = (SyntaxError, ValueError, TypeError, struct.error, OSError,   # Pillow's, on a broken EXIF
               UserWarning)   # its "Corrupt EXIF data", raised within _strict_exif


@contextmanager
def _strict_exif():
    """Pillow's warnings on a half-read EXIF as errors: the EXIF is then left
    out with a note, and no warning reaches the user."""
    with caught_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


def _parsed(exif: bytes) -> Image.Exif:
    ex = Image.Exif()
    ex.load(exif)
    return ex


def exif_reads(exif: bytes) -> bool:
    """Whether Pillow reads `exif`: encode keeps an EXIF only then, and
    decode writes one back only then (a crafted file's may not read)."""
    try:
        with _strict_exif():
            _parsed(exif)
    except EXIF_ERRORS:
        return False
    return True


def _metadata(im: Image.Image, orientation, notices: list, in_memory: bool = False) -> dict:
    """EXIF, ICC profile and XMP of an image, turned upright by
    ImageOps.exif_transpose (which drops a non-1 Orientation tag and the
    XMP's tiff:Orientation) where `orientation`, the tag before that, is
    not None.  `in_memory`: an image handed over as it is, whose EXIF may
    have been changed through im.getexif()."""
    info, out = im.info, {}
    try:
        with _strict_exif():
            exif = info.get("exif")
            if isinstance(exif, Image.Exif):
                exif = exif.tobytes()
            if exif or "Raw profile type exif" in info:
                if orientation not in (None, 1) or not exif:   # rewrite only when it must change
                    ex = im.getexif()
                    ex[ORIENTATION] = 1
                    exif = ex.tobytes()
                elif in_memory and _parsed(exif).tobytes() != (edited := im.getexif().tobytes()):
                    exif = edited   # changed through getexif(), as Pillow's savers take it
                exif = exif if exif.startswith(EXIF_HEAD) else EXIF_HEAD + exif
                _parsed(exif)   # kept only if it reads: decode writes it back
                out["exif"] = exif
    except EXIF_ERRORS:
        notices.append("EXIF left out: unreadable")
    icc = info.get("icc_profile")
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")   # the latter: PNG, as text
    for key, value in (("icc_profile", icc), ("xmp", xmp.encode("utf-8") if isinstance(xmp, str) else xmp)):
        if not value:
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            out[key] = bytes(value)
        elif in_memory:   # bytes(4) would store four zero bytes
            raise TypeError(f"{key} must be bytes, got {type(value).__name__}")
        else:
            notices.append(f"{key} left out: not bytes but {type(value).__name__}")
    total = sum(map(len, out.values()))
    if total > MAX_METADATA:
        notices.append(f"metadata left out: {total} bytes, over the limit of {MAX_METADATA}")
        return {}
    return out


def _upright(im: Image.Image, notices: list):
    """-> (the image as a viewer shows it, its Orientation tag before); a
    broken EXIF, which Pillow cannot read to turn the image, is left out."""
    try:
        with _strict_exif():
            orientation = im.getexif().get(ORIENTATION)   # exif_transpose reads it too
            return ImageOps.exif_transpose(im), orientation
    except EXIF_ERRORS:
        im = im.copy()
        for key in ("exif", "Raw profile type exif"):
            im.info.pop(key, None)
        notices.append("EXIF left out: unreadable")
        return im, None


# A TIFF's tags that describe the file itself (its size, strips, samples,
# compression), not the photo: left out of a TIFF's EXIF, and out of any EXIF
# written into a TIFF, where Pillow's writer would take them over its own
# (a phone's ImageWidth/ImageLength gave a TIFF of the wrong size)
TIFF_LAYOUT_TAGS = frozenset((254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 292, 293, 317,
                              320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 512, 513, 514, 515, 517,
                              518, 519, 520, 521, 529, 530, 531, 532))
_RESOLUTION = frozenset((282, 283, 296))   # dpi: kept, but alone no reason to make an EXIF
_TIFF_KEPT_APART = frozenset((700, 33723, 34377, 34675, 37724))   # XMP, IPTC, Photoshop, ICC, layers
_EXIF_IFDS = (0x8769, 0x8825)   # the EXIF and GPS IFDs: read as such, not as their offsets


def _tiff_exif(im: Image.Image) -> None:
    """A TIFF's EXIF (Make, DateTime, the EXIF and GPS IFDs) is its own tags,
    which Pillow gives by getexif(), not as info["exif"]: made one, so that
    it is kept as a JPEG's is."""
    if im.format != "TIFF" or im.info.get("exif"):
        return
    tags, ex, ifds = im.getexif(), Image.Exif(), False
    for tag, value in tags.items():
        if tag in _EXIF_IFDS:
            ifd = tags.get_ifd(tag)
            ex.get_ifd(tag).update(ifd)
            ifds = ifds or bool(ifd)
        elif tag not in TIFF_LAYOUT_TAGS and tag not in _TIFF_KEPT_APART:
            ex[tag] = value
    if ifds or set(ex) - _RESOLUTION:
        im.info["exif"] = ex.tobytes()


def _from_pil(im: Image.Image, notices: list, upright: bool = True) -> Picture:
    """`upright`: turn the pixels as the EXIF says (a file); False: an image
    handed over in memory is coded as it is, its EXIF unchanged, as Pillow's
    own formats save it (its pixels may have been turned already)."""
    frames = getattr(im, "n_frames", 1)   # an animation or a multi-page TIFF: one picture is coded
    if frames > 1 and im.format != "MPO":   # MPO: a phone JPEG's second frame is its gain map or depth
        current = im.tell()   # a file is read at its first frame; an image in memory where it was left
        notices.append(f"{frames} frames: only " + (f"frame {current + 1}, the current one," if current
                                                     else "the first") + " is coded")
    if upright:
        _tiff_exif(im)
    im, orientation = _upright(im, notices) if upright else (im, None)
    metadata = _metadata(im, orientation, notices, in_memory=not upright)
    key = im.info.get("transparency")   # PNG's tRNS: one colour (or grey level) is transparent
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        grey = Image.fromarray(_to_8_bits(arr, im.mode, notices), "L")
        if isinstance(key, int) and (arr == key).any():
            grey.putalpha(Image.fromarray(np.where(arr == key, 0, 255).astype(np.uint8), "L"))
            notices.append(KEY_TO_ALPHA)
        im = grey
    elif im.mode in ("1", "L", "RGB") and key is not None:
        keyed = im.convert("RGBA" if im.mode == "RGB" else "LA")
        if keyed.getchannel("A").getextrema()[0] < 255:   # a key that no pixel has: no alpha
            im = keyed
            notices.append(KEY_TO_ALPHA)
    if im.mode == "P":
        keyed = im.convert("RGBA") if im.has_transparency_data else None   # info's key, or an RGBA palette
        if keyed is not None and keyed.getchannel("A").getextrema()[0] < 255:   # as a colour key above
            notices.append("its palette's transparency became an alpha channel")
            im = keyed
        else:
            im = im.convert("RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode == "La":     # premultiplied alpha
        im = im.convert("LA")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):   # LAB's A is a colour, RGBa's alpha premultiplied
        im = im.convert("RGBA" if im.mode == "RGBa" or "transparency" in im.info else "RGB")
    mode = im.mode
    if mode in ("L", "LA"):
        lum = np.asarray(im.getchannel("L"))
        rgb = np.repeat(lum[..., None], 3, axis=-1)
    else:
        rgb = np.asarray(im.convert("RGB"))
    alpha = np.asarray(im.getchannel("A")).copy() if mode in ("LA", "RGBA") else None
    icc_space = metadata.get("icc_profile", b"")[16:20]
    if icc_space and icc_space != (b"GRAY" if mode in ("L", "LA") else b"RGB "):
        # e.g. a CMYK profile no longer describes pixels converted to RGB
        space = icc_space.decode("latin-1").strip()
        notices.append(f"ICC profile left out: its colour space {space!r} is not that of "
                       f"the stored {mode} pixels")
        del metadata["icc_profile"]
    return Picture(np.ascontiguousarray(rgb), alpha, mode, notices, metadata)


def _to_8_bits(arr: np.ndarray, mode: str, notices: list) -> np.ndarray:
    """A 16-bit, 32-bit integer or float grey image -> uint8, with a note.
    16 bits: 0..65535; 32-bit integers: 0..255 or 0..65535 as their values
    fit; floats: 0..1 (a linear or HDR image's highlights above 1 clipped, as
    a viewer shows it) up to a peak of 4, else 0..255.  A range beyond those
    is scaled by its own peak, and said."""
    if not np.isfinite(arr).all():
        raise ImageInputError("the image has NaN or infinite values")
    top, low = float(arr.max(initial=0)), float(arr.min(initial=0))
    if mode == "F":   # white is 1 (or 255); a little above it is highlight, far above another range
        what, peak = "floating-point", 1.0 if top <= 4.0 else 255.0
        scale_from = 4 * peak
    else:
        what = "16-bit" if mode.startswith("I;16") else "32-bit"
        if low < 0:   # signed data, or a uint32 TIFF over 2^31, which Pillow reads as negative
            raise ImageInputError(f"{what} image with negative values (down to {low:g}): "
                                  f"rescodec reads integer images of 0..65535")
        peak = scale_from = 65535.0 if top > 255 or mode.startswith("I;16") else 255.0
    below = ", values below 0 clipped" if low < 0 else ""
    if top > scale_from:
        notices.append(f"{what} image of values up to {top:g} scaled to 8-bit by its peak{below}")
        peak = top
    elif top > peak:
        notices.append(f"{what} image converted to 8-bit, values above {peak:g}{below and ' and below 0'} clipped")
    else:
        notices.append(f"{what} image converted to 8-bit{below}")
    return np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)


def _from_array(a: np.ndarray, notices: list) -> Picture:
    a = np.asarray(a)
    if a.dtype.kind not in "buif":   # complex, strings, objects
        raise ImageInputError(f"array of {a.dtype} is not an image (need integers, floats or bools)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or a.size == 0:
        raise ImageInputError(f"array of shape {a.shape} is not an image (need HxW, HxWx3 or HxWx4)")
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:   # either byte order (">u2" from a file)
        a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
        notices.append("16-bit image converted to 8-bit")
    elif a.dtype.kind == "f":
        a = _to_8_bits(a.astype(np.float64), "F", notices)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:   # other integers: 0..255, or as Pillow's 32-bit mode I (0..65535)
        if a.min(initial=0) < 0:
            raise ImageInputError(f"integer array with negative values ({a.dtype})")
        a = a.astype(np.uint8) if a.max(initial=0) <= 255 else _to_8_bits(a.astype(np.float64), "I", notices)
    mode = {2: "L"}.get(a.ndim) or {2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return _from_pil(Image.fromarray(np.ascontiguousarray(a), mode), notices)


# What Pillow's readers raise on a damaged file: OSError and the like, and,
# since its image plugins check little, a broken AVIF's RuntimeError or a
# broken TIFF's TypeError; the latter only where Pillow raised them, so that
# rescodec's own bugs are not called unreadable images
READ_ERRORS = (OSError, SyntaxError, ValueError, struct.error)
PILLOW_ERRORS = (RuntimeError, TypeError, EOFError, IndexError, KeyError)


def _raised_by_pillow(e: Exception) -> bool:
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and f"{os.sep}PIL{os.sep}" in frames[-1].filename


def _unreadable(e: Exception, name: str) -> Exception:
    """A reader's error (READ_ERRORS, or PILLOW_ERRORS raised by Pillow) as
    ImageInputError; any other error as it is (a bug of rescodec's)."""
    if not isinstance(e, READ_ERRORS) and not _raised_by_pillow(e):
        return e
    return ImageInputError(f"{name}: unreadable image: {str(e) or type(e).__name__}")


def _over(w: int, h: int, max_pixels: int) -> str:
    return (f"{w}x{h} is over the limit of {max_pixels} pixels (raise it with --max-pixels, "
            f"or max_pixels=)")


@contextmanager
def pillow_limit(pixels: int):
    """Pillow's own bomb guard (an error at twice Image.MAX_IMAGE_PIXELS)
    raised to `pixels` where that is higher, while this read runs.  Reads in
    other threads may run at the raised limit meanwhile; rescodec's own
    check of the size (before pixels are decoded) still holds for them."""
    with _PILLOW_LIMIT:
        base = _raised["saved"] if _raised["count"] else Image.MAX_IMAGE_PIXELS
        need = base is not None and pixels > 2 * base
        if need:
            if not _raised["count"]:
                _raised["saved"] = Image.MAX_IMAGE_PIXELS
            _raised["count"] += 1
            Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, pixels)
    try:
        yield
    finally:
        if need:
            with _PILLOW_LIMIT:
                _raised["count"] -= 1
                if not _raised["count"]:
                    Image.MAX_IMAGE_PIXELS = _raised["saved"]


def _png_key_to_8_bits(im: Image.Image, bits: int | None) -> None:
    """A PNG's tRNS colour on the scale of the pixels Pillow gives: it scales
    1-, 2- and 4-bit grey to 0..255 (the key too only since Pillow 12.1, for 1
    bit), and reads 16-bit RGB as its high bytes but keeps a 16-bit key."""
    key = im.info["transparency"]
    if im.mode in ("1", "L") and bits in (1, 2, 4) and isinstance(key, int) and key <= 2 ** bits - 1:
        im.info["transparency"] = key * 255 // (2 ** bits - 1)
    elif im.mode == "RGB" and bits == 16 and isinstance(key, tuple):
        if all(v % 257 == 0 for v in key):   # a key of 8-bit values, as 16-bit writers scale them
            im.info["transparency"] = tuple(v // 257 for v in key)
        else:   # no 8-bit colour is that one
            del im.info["transparency"]


def _from_file(f, name: str, max_pixels: int = MAX_INPUT_PIXELS) -> Picture:
    """An image file (an open binary file) -> Picture; its errors name it `name`."""
    notices: list = []
    head = f.read(256)   # PNG's IHDR (26 bytes); a PNM header, comments and all
    if not head:
        raise ImageInputError(f"{name}: empty file")
    f.seek(0)
    try:
        with caught_warnings(record=True) as said:   # Pillow's warnings become notes
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # rescodec's limit is below
            warnings.simplefilter("ignore", DeprecationWarning)   # Pillow's words to programmers
            # a JPEG's broken EXIF warns as it opens; _metadata leaves it out with a note
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
            with pillow_limit(max_pixels), Image.open(f) as im:
                if im.width * im.height > max_pixels:
                    raise ImageInputError(f"{name}: {_over(im.width, im.height, max_pixels)}")
                im.load()
                if im.format == "RSC":   # the plugin's decode: a second generation of loss
                    notices.append("an .rsc input: decoded, then coded again")
                bits = _bit_depth(head, im)
                if bits and bits > 8 and im.mode in ("RGB", "RGBA"):
                    notices.append(f"{bits}-bit {im.format} converted to 8-bit")
                if im.format == "PNG" and head[25:26] == b"\x04" and im.mode == "RGBA":   # grey and
                    im = im.convert("LA")   # alpha of 16 bits, which Pillow reads as RGBA of equal channels
                if bits and bits > 8 and im.format == "PPM" and im.mode == "I":   # grey, scaled to 0..65535
                    im = Image.fromarray(np.round(np.asarray(im) / 257.0).astype(np.uint8), "L")
                    notices.append(f"{bits}-bit PGM converted to 8-bit")
                if im.format == "PNG" and "transparency" in im.info:
                    _png_key_to_8_bits(im, bits)
                pic = _from_pil(im, notices)
        pic.notices[:0] = list(dict.fromkeys(f"{im.format or 'image'}: {w.message}" for w in said))
        return pic
    except RscError:   # rescodec's own (a limit above; an .rsc input's): said as they are
        raise
    except Image.DecompressionBombError as e:   # Pillow's guard: said as rescodec's own
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        what = f"image of {pixels[1]} pixels" if pixels else "image"
        raise ImageInputError(f"{name}: {what} is over the limit of {max_pixels} pixels (raise it with "
                              f"--max-pixels, or max_pixels=)") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image rescodec can read") from None
    except (*READ_ERRORS, *PILLOW_ERRORS) as e:
        raise _unreadable(e, name) from None


# A stream is read whole before Pillow sees it, so it is bounded by what an
# image of max_pixels pixels can take, uncompressed at 16 bits with alpha,
# plus room for metadata: an endless pipe ends in an error, not out of memory.
MAX_INPUT_BYTES_PER_PIXEL = 8
MAX_INPUT_OVERHEAD = 64 << 20


def _most_input_bytes(f, max_pixels: int) -> int:
    if isinstance(f, io.TextIOBase):
        raise TypeError("the file gives text, not bytes: open it in binary mode ('rb')")
    return max_pixels * MAX_INPUT_BYTES_PER_PIXEL + MAX_INPUT_OVERHEAD


def _too_much(name: str, most: int, max_pixels: int) -> ImageInputError:
    return ImageInputError(f"{name}: over {most} bytes, more than an image of at most {max_pixels} pixels takes")


def read_binary(f, name: str = "<image data>", max_pixels: int = MAX_INPUT_PIXELS) -> bytes:
    """The rest of a file object, which must give bytes (TypeError for a text
    one), up to what an image of `max_pixels` takes (ImageInputError past it)."""
    most = _most_input_bytes(f, max_pixels)
    data = read_up_to(f, most + 1)
    if len(data) > most:
        raise _too_much(name, most, max_pixels)
    return data


def copy_binary(f, out, name: str, max_pixels: int = MAX_INPUT_PIXELS) -> None:
    """read_binary's bytes written to the binary file `out` as they come, so
    that a large pipe is not held in memory too."""
    most, got = _most_input_bytes(f, max_pixels), 0
    while part := f.read(1 << 20):
        got += len(part)
        if got > most:
            raise _too_much(name, most, max_pixels)
        out.write(part)


def load(src, max_pixels: int = MAX_INPUT_PIXELS) -> Picture:
    """A path, image file data (bytes or a binary file object), PIL image or
    numpy array -> Picture.  Raises ImageInputError, also for an image of
    more than `max_pixels` pixels (a decompression bomb guard); a path that
    cannot be opened, the OSError open() raises (FileNotFoundError,
    IsADirectoryError, ...), as codec.file_bytes does."""
    check_max_pixels(max_pixels)
    if isinstance(src, np.ndarray):
        pic = _from_array(src, [])
    elif isinstance(src, Image.Image):
        try:   # a lazily read image reads its file now: a damaged one is an input error
            src.load()
        except (*READ_ERRORS, *PILLOW_ERRORS) as e:
            raise _unreadable(e, "<PIL image>") from None
        pic = _from_pil(src, [], upright=False)
    elif isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:   # a pipe or a device is read as a file: encode /dev/stdin
            name = os.fspath(src)
            pic = _from_file(f if f.seekable() else io.BytesIO(read_binary(f, name, max_pixels)), name, max_pixels)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        pic = _from_file(io.BytesIO(src), "<image data>", max_pixels)
    elif callable(getattr(src, "read", None)):
        name = getattr(src, "name", None)   # an open() of a descriptor has an int name
        name = name if isinstance(name, str) else "<image data>"
        pic = _from_file(io.BytesIO(read_binary(src, name, max_pixels)), name, max_pixels)
    else:
        raise TypeError(f"expected a path, image file data, PIL image or numpy array, "
                        f"got {type(src).__name__}")
    h, w = pic.rgb.shape[:2]
    if h * w > max_pixels:
        raise ImageInputError(f"image of {_over(w, h, max_pixels)}")
    return pic


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """Decoded RGB (+ alpha) -> a PIL image in the file's original mode."""
    im = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        im = im.convert("L")
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha, "L"))
    return im

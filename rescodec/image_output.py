"""Decoded pictures as image files: the format an output's extension names,
with the metadata that format can hold, and a notice for what it cannot."""
from __future__ import annotations

import io
from pathlib import Path

from . import atomic_write


# output extension -> Pillow format and save options: JPEG at quality 95 and
# 4:4:4, as the AVIF inside (Pillow's default 4:2:0 lost up to 1.8 dB more;
# BENCHMARKS.md, "Decoding to JPEG"); WebP lossless and exact (the colour
# under alpha 0 kept too)
_JPEG = ("JPEG", {"quality": 95, "subsampling": 0})
IMAGE_FORMATS = {".png": ("PNG", {}), ".jpg": _JPEG, ".jpeg": _JPEG,
                 ".webp": ("WEBP", {"lossless": True, "exact": True}),
                 ".tif": ("TIFF", {}), ".tiff": ("TIFF", {}), ".bmp": ("BMP", {})}
THUMB_FORMATS = {**IMAGE_FORMATS, ".avif": ("AVIF", {})}   # .avif: the stored AVIF itself (thumb)
NO_ALPHA = {"JPEG", "BMP"}
TIFF_XMP = 700                        # the TIFF tag that holds XMP
JPEG_MAX_XMP = 65504                  # one APP1 segment, less its XMP namespace header
JPEG_MAX_EXIF = 65533                 # one APP1 segment, "Exif\0\0" included (Pillow's own limit)
JPEG_MAX_ICC = 255 * 65519            # APP2 segments of 65519 bytes, counted in a byte


def format_for(dst: Path | None) -> tuple:
    """(Pillow's format, its save parameters) for dst's extension (PNG for stdout)."""
    return IMAGE_FORMATS[".png" if dst is None or atomic_write.is_stream(dst) else dst.suffix.lower()]


def check_fits(dst: Path | None, width: int, height: int) -> None:
    """Before the decode: an output format that cannot hold the picture's size."""
    from .lossless import SIDE_LIMITS
    name, most = SIDE_LIMITS.get(format_for(dst)[0], (None, None))
    if most is not None and max(width, height) > most:
        raise ValueError(f"{name} holds at most {most} pixels a side, not {width}x{height}: "
                         f"write .png or .tif instead of {'<stdout>' if dst is None else dst}")


def written_mode(img, dst: Path | None) -> str:
    """The mode of what image_bytes writes: without alpha where the format
    has none; WebP stores grey as RGB."""
    fmt = format_for(dst)[0]
    if fmt in NO_ALPHA and img.mode in ("RGBA", "LA"):
        return img.mode[:-1]
    return {"L": "RGB", "LA": "RGBA"}.get(img.mode, img.mode) if fmt == "WEBP" else img.mode


def image_bytes(img, dst: Path | None, notices: list, quality: int | None = None) -> bytes:
    """A PIL image in the format dst's extension names (PNG for stdout), with
    its ICC profile, EXIF and XMP when it has them and the format holds them;
    `quality`: a JPEG's or a (then lossy) WebP's, instead of 95 and lossless."""
    fmt, params = format_for(dst)
    params = dict(params)
    if quality is not None and fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
        if fmt == "WEBP":
            params["lossless"] = False
            params.pop("exact")
    elif quality is not None:
        notices.append(f"-q sets the quality of a .jpg or .webp output: {fmt} is lossless")
    meta = [key for key in ("icc_profile", "exif", "xmp") if img.info.get(key)]
    exif = img.info.get("exif")
    if exif and fmt != "BMP":
        from . import images
        if not images.exif_reads(exif):   # a crafted file's: TIFF's writer parses it, and fails
            meta.remove("exif")
            notices.append("EXIF left out: unreadable")
        elif fmt == "JPEG" and len(exif) > JPEG_MAX_EXIF:
            meta.remove("exif")
            notices.append(f"JPEG cannot hold EXIF of {len(exif)} bytes (at most {JPEG_MAX_EXIF}): left out")
    icc = img.info.get("icc_profile")
    if icc and fmt == "JPEG" and len(icc) > JPEG_MAX_ICC:   # Pillow would write a count of 0 segments
        meta.remove("icc_profile")
        notices.append(f"JPEG cannot hold an ICC profile of {len(icc)} bytes (at most {JPEG_MAX_ICC}): left out")
    if fmt == "WEBP" and img.mode in ("L", "LA") and "icc_profile" in meta:   # WebP stores grey as RGB
        meta.remove("icc_profile")
        notices.append("WebP keeps grey as RGB, which the grey ICC profile does not describe: left out")
    if fmt == "BMP" and meta:
        notices.append(f"BMP cannot hold metadata: {', '.join(meta)} left out")
    params.update({key: img.info[key] for key in meta if key != "xmp"})
    xmp = img.info.get("xmp")
    if xmp and fmt == "JPEG" and len(xmp) > JPEG_MAX_XMP:
        notices.append(f"JPEG cannot hold XMP of {len(xmp)} bytes (at most {JPEG_MAX_XMP}): left out")
    elif xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    elif xmp and fmt == "PNG":       # Pillow writes PNG's XMP as this iTXt chunk
        from PIL import PngImagePlugin
        params["pnginfo"] = PngImagePlugin.PngInfo()
        params["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
    if fmt == "TIFF" and (xmp or params.get("exif")):
        from PIL import Image
        from . import images
        exif = Image.Exif()
        exif.load(params.get("exif") or b"")
        for tag in images.TIFF_LAYOUT_TAGS & set(exif):   # Pillow's writer takes these over its own
            del exif[tag]
        if xmp:   # in the EXIF tags: Pillow's TIFF writer drops exif= beside tiffinfo=
            exif[TIFF_XMP] = xmp
        params["exif"] = exif
    mode = written_mode(img, dst)
    if fmt in NO_ALPHA and mode != img.mode:
        img = img.convert(mode)
        notices.append(f"{fmt} cannot hold transparency: the alpha channel was dropped")
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()

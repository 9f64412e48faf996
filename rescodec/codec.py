"""The Python API: encode and decode between pixels and .rsc bytes, and
what a file holds (info, metadata, thumbnails, check).

encode: the file rate_control.py chooses, built by encoder.py
decode: decoder.py, the container's sections back into pixels, the
        source's EXIF, ICC profile and XMP in the image's .info
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import av1_item, container, decoder, images, lossless, lossy_lr, mask_coding, rate_control
from .container import Header
from .decoder import OWN_FILES, Source, decode_array, file_bytes, lr_image, unpack
from .errors import ImageInputError
from .settings import EncodeSettings

__all__ = ["CODEC_NAMES", "Encoded", "Source", "check", "decode", "decode_array", "encode", "encode_ex", "file_bytes",
           "grey_with_icc", "info", "lr_image", "metadata", "psnr", "thumbnail", "thumbnail_avif", "thumbnail_image",
           "unpack"]
CODEC_NAMES = {**lossless.CODEC_NAMES, container.AVIF: "avif", container.AV1: "av1",
               container.AV1_SHORT: "av1"}   # LR payload codec ids


@dataclass
class Encoded:
    data: bytes
    header: Header
    sizes: dict
    notices: list
    seconds: float
    psnr: float | None = None   # of the decode against the image, where asked (encode_ex's measure)


def encode_ex(image, settings: EncodeSettings, progress=None, net=None,
              max_pixels: int = container.MAX_PIXELS, measure: bool = False) -> Encoded:
    """encode() plus the header, section sizes, notices and time.  `net`: a
    network to use instead of the registered model (training validation);
    then the settings must be complete (scale, threshold, LR codec, ...).
    `max_pixels`: refuse larger images (ImageInputError).  `measure`: also
    the decode's PSNR against the image (psnr; one decode more, not in the
    time), from the picture already read, so that a pipe is read once."""
    t0 = time.perf_counter()
    if not isinstance(settings, EncodeSettings):
        raise TypeError(f"settings must be an EncodeSettings, got {type(settings).__name__}")
    settings.validate()
    pic = images.load(image, max_pixels)
    pic.metadata = {k: v for k, v in pic.metadata.items() if k in settings.kept_metadata}
    container.check_sides(pic.rgb.shape[1], pic.rgb.shape[0])   # before AVIF refuses it less clearly
    db = None
    if settings.is_target:
        data, notices, _ = rate_control.encode_to_target(pic, settings, net)
    elif settings.psnr is not None:
        data, notices, db = rate_control.encode_to_psnr(pic, settings, net)   # measured by the search
    else:
        data, notices = rate_control.encode_quality(pic, settings, net, progress)
    f = unpack(data, max_pixels=OWN_FILES)   # also re-checks what we wrote
    seconds = time.perf_counter() - t0
    if measure and db is None:
        db = rate_control.decoded_psnr(pic, data, net)
    return Encoded(data, f.header, f.sizes, list(pic.notices) + notices, seconds, db if measure else None)


def psnr(image, data: Source, max_pixels: int = container.MAX_PIXELS) -> float:
    """PSNR in dB of .rsc bytes' decode against `image` (anything encode
    takes), as --psnr judges it: RGB, a grey image's one channel, no alpha;
    inf where the decode is exact.  ImageInputError where the sizes differ."""
    pic = images.load(image, max_pixels)
    data = file_bytes(data, max_pixels)   # a file object is read once
    hd = unpack(data, max_pixels=max_pixels).header
    if (hd.height, hd.width) != pic.rgb.shape[:2]:
        raise ImageInputError(f"the image is {pic.rgb.shape[1]}x{pic.rgb.shape[0]}, "
                              f"the file {hd.width}x{hd.height}")
    return rate_control.decoded_psnr(pic, data)


def encode(image, scale: int | None = None, max_pixels: int = container.MAX_PIXELS, **options) -> bytes:
    """A path, image file data (bytes or a binary file), PIL image or numpy
    array -> .rsc bytes.

    scale: force 1, 2, 4, 8 or 16 (None: chosen by the quality).  Options
    (settings.EncodeSettings): quality (0-100, README "Command line", -q), or a target
    bpp or size (bytes) for the whole file, met per image, or psnr (dB: the
    lowest quality whose decode reaches it); lr_codec ("avif" or
    "lossless"; default: the model's own, AVIF at x1-x4), lr_quality (the thumbnail's AVIF quality),
    model (a registered name), bits (1-3), threshold, norm, sigma (the edge
    mask), temperature and seed (Z), refine (True: AVIF at speed 0 and, where
    quality chose the scale, the best scale at that size, or on a lossless LR
    the descent's own steps; N: N descent steps on the LR;
    settings.refine_steps), refine_method ("rd" or "hcd"),
    device (auto, cpu, cuda), lr_speed (the AVIF speed, 0-10), and for the
    lossless LR lr_step (1-16) and lr_space ("rgb" or "ycc"); metadata ("all",
    "none", or a comma list of "exif", "icc", "xmp": what of the source's
    metadata the file keeps).  None, for any
    option, is the option not given: the default, or the model's own value;
    an unknown option is a ValueError.  max_pixels: refuse
    larger images (2^27 by default; ImageInputError)."""
    return encode_ex(image, EncodeSettings.from_options(scale, **options), max_pixels=max_pixels).data


@decoder.names_its_path
def check(data: Source, max_pixels: int = container.MAX_PIXELS) -> Header:
    """Whether .rsc data would decode, without running the network: every
    section decoded (the small picture, the mask or gain map, the alpha
    plane, the metadata) and the model it needs found installed and whole
    -> its header; the RscError decode would raise otherwise."""
    f = unpack(data, max_pixels=max_pixels)
    _metadata(f)
    return decoder.decode_sections(f)[0]


@decoder.names_its_path
def thumbnail(data: Source, max_pixels: int = container.MAX_PIXELS) -> np.ndarray:
    """The LR image inside .rsc bytes, (ceil(H/s), ceil(W/s), 3) uint8, without
    running the flow: a viewable thumbnail of the picture."""
    return _thumbnail(unpack(data, max_pixels=max_pixels))


def _thumbnail(f: container.RscFile) -> np.ndarray:
    lr = lr_image(f.sections[container.SECTION_LR], f.header)
    return np.clip(np.round(lr), 0, 255).astype(np.uint8) if lr.dtype != np.uint8 else lr


@decoder.names_its_path
def thumbnail_image(data: Source, max_pixels: int = container.MAX_PIXELS) -> tuple[Image.Image, bool]:
    """thumbnail() as a PIL image: grey for a grey file, with the file's ICC
    profile (the same colours; its EXIF and XMP describe the full photo).
    The small picture has no alpha.  -> (image, whether the file has alpha)."""
    f = unpack(data, max_pixels=max_pixels)
    im = images.to_pil(_thumbnail(f), None, f.header.mode)   # L or RGB
    icc = _metadata(f).get("icc_profile")
    if icc:
        im.info["icc_profile"] = icc
    return im, f.header.has_alpha


@decoder.names_its_path
def thumbnail_avif(data: Source, max_pixels: int = container.MAX_PIXELS) -> tuple[bytes, bool]:
    """The small picture as the AVIF file it is stored as, not coded again,
    with the file's ICC profile where it describes RGB (a grey picture's is
    RGB in AVIF: grey_with_icc): an x1 file's is the full-size photo, which
    browsers show.  -> (AVIF bytes, whether the file has alpha, which it
    leaves out).  A small picture stored as a whole AVIF file (another
    libavif's layout) is given as it is.  It is decoded once, so that a
    damaged one is a CorruptError, not a file no viewer opens.  ValueError
    for a file whose small picture is lossless."""
    f = unpack(data, max_pixels=max_pixels)
    payload, shape = f.sections[container.SECTION_LR], f.header.lr_size
    if payload[0] == container.AV1_SHORT:
        payload = container.long_av1(payload)
    if payload[0] == container.AV1:
        icc = None if f.header.mode in ("L", "LA") else _metadata(f).get("icc_profile")
        avif = av1_item.wrap(payload[1:], shape, icc)
    elif payload[0] == container.AVIF:   # a whole AVIF file, as another libavif laid it out
        av1_item.check_whole(payload[1:], shape, f.header.version)
        avif = payload[1:]
    else:
        raise ValueError(f"its small picture is stored losslessly (x{f.header.scale}, "
                         f"{f.header.lr_codec}), not as AVIF: write .png")
    lossy_lr.decode(avif, shape + (3,))
    return avif, f.header.has_alpha


@decoder.names_its_path
def grey_with_icc(data: Source, max_pixels: int = container.MAX_PIXELS) -> bool:
    """Whether the file is grey with an ICC profile, which (images.load keeps
    a profile of the image's own colour space) is a grey one."""
    f = unpack(data, max_pixels=max_pixels)
    return f.header.mode in ("L", "LA") and "icc_profile" in _metadata(f)


@decoder.names_its_path
def metadata(data: Source, max_pixels: int = container.MAX_PIXELS) -> dict:
    """The source's metadata kept in .rsc bytes: {"exif", "icc_profile",
    "xmp": bytes}, each key only when stored (no pixel decoding)."""
    return _metadata(unpack(data, max_pixels=max_pixels))


def _metadata(f: container.RscFile) -> dict:
    if not f.header.has_metadata:
        return {}
    return container.unpack_metadata(f.sections[container.SECTION_METADATA])


@decoder.names_its_path
def decode(data: Source, max_pixels: int = container.MAX_PIXELS,
           temperature: float | None = None, seed: int | None = None, fast: bool = False) -> Image.Image:
    """.rsc bytes, a path to a .rsc file, or a binary file object (read from
    where it is) -> PIL.Image in the original mode (L, LA, RGB or RGBA),
    with the stored EXIF, ICC profile and XMP in its .info.  `temperature`,
    `seed`: draw Z with these instead of the file's own (README "Texture and
    temperature").  `fast`: skip the decoder's restoration head, for a
    quicker decode of lower PSNR (README "Command line", --fast)."""
    f = unpack(data, max_pixels=max_pixels)
    meta = _metadata(f)   # first: a bad section fails before the flow runs
    rgb, alpha, hd = decoder.decode_rgb(f, None, temperature, seed, fast)
    im = images.to_pil(rgb, alpha, hd.mode)
    im.info.update(meta)
    return im


@decoder.names_its_path
def info(data: Source, max_pixels: int = container.MAX_PIXELS) -> dict:
    """Header fields, section sizes, bpp and the sizes of the stored metadata
    of .rsc bytes or a file (no pixel decoding)."""
    data = file_bytes(data, max_pixels)
    f = unpack(data, max_pixels=max_pixels)
    hd = f.header
    pixels = hd.width * hd.height
    out = {"format_version": hd.version, "width": hd.width, "height": hd.height,
           "mode": hd.mode, "channels": hd.channels, "scale": hd.scale,
           "lr_size": f"{hd.lr_size[1]}x{hd.lr_size[0]}", "model": hd.model,
           "weights_sha256_prefix": hd.weights_hash.hex(), "mask_bits": hd.mask_bits,
           "mask_norm": hd.mask_norm, "mask_threshold": hd.mask_threshold,
           "mask_sigma": round(hd.mask_sigma, 4), "z_seed": hd.z_seed,
           "z_temperature": round(hd.z_temperature, 4), "lr_step": hd.lr_step,
           "lr_space": hd.lr_space,
           "lr_codec": CODEC_NAMES.get(f.sections[container.SECTION_LR][0], "?"),
           "mask_coder": ("head gain map, " if hd.version == container.VERSION_X1_GAINS else "")
           + mask_coding.CODER_NAMES.get(f.sections[container.SECTION_MASK][0], "?"),
           "metadata": {k: len(v) for k, v in _metadata(f).items()},
           "bytes": len(data), "bpp": 8 * len(data) / pixels,
           "sections": {k: {"bytes": v, "share": v / len(data)} for k, v in f.sizes.items()}}
    return out

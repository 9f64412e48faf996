"""Encode and decode: the pipeline between pixels and .rsc bytes.

encode: pad to a multiple of s (symmetric reflection) -> flow forward ->
        Y through AVIF (lossy_lr.py; or, with lr_codec "lossless", rounded
        to the LR step's grid and its codes stored losslessly) ->
        boundary mask of the padded image at LR resolution, entropy-coded ->
        container
decode: container -> Y (the AVIF decode, or from the codes), B = mask
        values, Z ~ N(0, t^2) from the stored seed -> flow inverse -> the
        model's restoration head, if it has one -> crop, clamp, round
At scale 1 there is no flow: the "LR" is the photo itself, through AVIF, and
the decoder runs the model's restoration head on it, at the gains per block
that the encoder chose and the mask section holds (head_gain.py).
The source's EXIF, ICC profile and XMP ride along in the metadata section
(images.load gathers them; decode() puts them in the image's .info).
"""
from __future__ import annotations

import functools
import io
import math
import os
import time
from dataclasses import dataclass, replace
from typing import BinaryIO, Union

import cv2
import numpy as np
import torch
from PIL import Image

from . import av1_item, container, head_gain, images, lossless, lossy_lr, lr_quant, mask_coding, refine, tiling, weights
from .container import Header
from .errors import CorruptError, ImageInputError, RscError
from .latent import DecoderInput
from .settings import EncodeSettings, x1_quality
from .tiling import pad, to_tensor

DEFAULT_SEED = EncodeSettings.seed
OWN_FILES = 1 << 62   # the pixel limit for reading the encoder's own files: any size its caller allowed
CODEC_NAMES = {**lossless.CODEC_NAMES, container.AVIF: "avif", container.AV1: "av1",
               container.AV1_SHORT: "av1"}   # LR payload codec ids
UNREGISTERED = "unregistered"   # model name in files from a network passed in (training validation)


@dataclass
class Encoded:
    data: bytes
    header: Header
    sizes: dict
    notices: list
    seconds: float
    psnr: float | None = None   # of the decode against the image, where asked (encode_ex's measure)


def _refine(net, padded, y, levels, st: EncodeSettings, progress, notices):
    """The LR refined against the exact decoder: same B, same Z, same rounding;
    `y` itself where no step improved on it (a whole image)."""
    if st.scale == 1:   # no LR to refine: _pack chooses the head's gains instead
        return y
    if not st.refine_steps:   # --refine on an AVIF LR: speed 0, no descent (settings.refine_steps)
        notices.append(f"refined: the LR at AVIF speed {st.avif_speed}" if st.lr_speed is None else
                       f"--refine: the LR at the AVIF speed asked for, {st.avif_speed}")
        return y
    # the temperature as the header stores it (float32), so Z is the decoder's own
    dec_in = DecoderInput(net, levels, st.bits, st.seed, float(np.float32(st.temperature)))
    whole = padded.shape[0] * padded.shape[1] <= refine.REFINE_WHOLE_MAX_PIXELS
    if st.lr_codec == "avif" and not whole:   # AVIF codes the whole LR: no tile-by-tile round trip
        notices.append(f"not refined: refinement of an AVIF LR is for images up to "
                       f"{refine.REFINE_WHOLE_MAX_PIXELS} pixels")
        return y
    if whole:
        out, before, after = refine.refine_lr(net, to_tensor(padded), dec_in, st, progress)
        if after <= before:     # refine_lr kept the unrefined LR: keep `y` itself, so callers see it
            notices.append(f"not refined: no step improved on the plain LR ({before:.2f} dB, padded image)")
            return y
        notices.append(f"refined: {before:.2f} -> {after:.2f} dB (padded image)")
        return out
    # bounded memory: tile by tile
    out, before, after = refine.refine_tiled(
        net, padded, lr_quant.lr_grid(y, st.lr_step, st.lr_space), dec_in, st, progress)
    notices.append(f"refined in tiles: {before:.2f} -> {after:.2f} dB "
                   "(padded image, estimated tile by tile)")
    return out


def _model(settings: EncodeSettings, net):
    """-> (resolved settings, network, weights hash prefix, notices)."""
    notices = []
    if net is None:
        st = settings.resolved()
        net, whash = weights.load_model(st.model), weights.hash_prefix(st.model)
        if st.scale == 1 and (st.temperature or st.seed != DEFAULT_SEED):   # no latent: t = 0
            notice = "an x1 file has no latent: --temperature and --seed change nothing"
            st = replace(st, temperature=0.0, seed=DEFAULT_SEED)
        else:
            notice = weights.temperature_notice(st.model, st.temperature)
        if notice:
            notices.append(notice)
        notices += _unused_options(settings, st)
    else:
        st = settings.validate()
        if None in (st.scale, st.threshold, st.lr_step, st.lr_space, st.lr_codec, st.temperature) or (
                st.lr_codec == "avif" and st.lr_quality is None):
            raise ValueError("with a network passed in, the settings must be complete")
        st, whash = replace(st, model=st.model or UNREGISTERED), bytes(8)
        if net.config.scale != st.scale:
            raise ValueError(f"the network is for x{net.config.scale}, not x{st.scale}")
    return st, net, whash, notices


def _unused_options(asked: EncodeSettings, st: EncodeSettings) -> list:
    """Notes on options that the resolved settings `st` leave without effect."""
    notes = []
    if st.lr_codec == "lossless" and asked.lr_codec is None and (asked.lr_step or asked.lr_space) \
            and weights.trained_for(st.scale, "avif"):
        given = [o for o, v in (("--lr-step", asked.lr_step), ("--lr-space", asked.lr_space)) if v]
        notes.append(f"{_options_that(given, 'store')} the small picture losslessly ({st.model})")
    given = [o for o, v in (("-q", asked.quality), ("--lr-quality", asked.lr_quality)) if v is not None]
    if st.lr_codec == "lossless" and given:
        notes.append(f"{_options_that(given, 'set')} nothing for a lossless small picture (--lr-step tunes it)")
    elif len(given) == 2 and (asked.scale is not None or asked.model is not None):
        notes.append("-q sets nothing with --lr-quality and a scale or model: --lr-quality is the AVIF quality")
    if st.scale == 1 and asked.refine is not True and asked.refine:
        notes.append("--refine-iters: no descent at x1 (the photo itself is coded); --refine's AVIF "
                     "speed 0 and gain map apply")
    given = [o for o, v in (("--bits", asked.bits != 1), ("--norm", asked.norm != 2),
                            ("--threshold", asked.threshold is not None), ("sigma", asked.sigma != 1.0)) if v]
    if st.scale == 1 and given:
        notes.append(f"an x1 file has no edge mask: {_options_that(given, 'change')} nothing")
    given = [o for o, v in (("--device", asked.device != "auto"),
                            ("--refine-method", asked.refine_method != "rd"),
                            ("refine_eps", asked.refine_eps is not None),     # Python's only
                            ("refine_alpha", asked.refine_alpha is not None),
                            ("refine_lambda", asked.refine_lambda is not None)) if v]
    if given and not asked.refine:
        notes.append(f"{_options_that(given, 'change')} nothing without --refine")
    elif given and (st.scale == 1 or not st.refine_steps):
        notes.append(f"{_options_that(given, 'change')} nothing: --refine runs no descent "
                     + ("at x1" if st.scale == 1 else "on an AVIF small picture (--refine-iters N does)"))
    if asked.lr_codec == "avif" and weights.card(st.model).defaults.lr_codec == "lossless":
        none = "" if weights.trained_for(st.scale, "avif") else f" (x{st.scale} has no model trained for AVIF)"
        notes.append(f"{st.model} was trained for a lossless small picture, and decodes one through "
                     f"AVIF far worse{none}")
    return notes


def _options_that(given: list, verb: str) -> str:
    """(["-q"], "set") -> "-q sets"; two options -> "-q and --lr-quality set"; three: "a, b and c set"."""
    names = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
    return f"{names} {verb if len(given) > 1 else verb + 's'}"


def _pack(pic, st: EncodeSettings, whash: bytes, y, levels, net=None, notices=None,
          lr: bytes | None = None, gains: bool = False) -> bytes:
    """The file for LR y and mask levels; `lr`: y's LR payload at these
    settings where the caller has it already (x1's AVIF of the photo);
    `gains`: choose x1's gain map at any AVIF quality."""
    h, w = pic.rgb.shape[:2]
    alpha = lossless.encode(pic.alpha) if pic.alpha is not None else None
    meta = container.pack_metadata(pic.metadata) if pic.metadata else None
    header = replace(st.header(w, h, pic.mode, whash), has_metadata=meta is not None)
    lr = lr_payload(y, st) if lr is None else lr
    mask = (_gain_map(pic, st, header, net, lr, notices, gains) if st.scale == 1
            else mask_coding.encode(levels, st.bits))
    # a registered model is named by its weights hash alone (version 7)
    named = weights.name_for_hash(whash) != st.model
    return container.pack(header, lr, mask, alpha, meta, store_name=named)


def _gain_map(pic, st: EncodeSettings, header: Header, net, lr: bytes, notices, gains: bool = False) -> bytes:
    """An x1 file's mask section: the head's gains per block (head_gain.py)
    from AVIF quality GAINS_FROM, or at any quality for graphics, with
    --refine or with `gains`, where the model has a head and the map pays for
    its bytes; else empty."""
    if net is None or net.head is None or not (
            st.refine or gains or st.lr_quality >= head_gain.GAINS_FROM
            or pic.flat_share >= head_gain.FLAT_SHARE):
        return bytes([mask_coding.EMPTY])
    d = lr_image(lr, header)
    levels = head_gain.choose(pic.rgb, d, _head_estimate(net, d), len(lr))
    if notices is not None and st.refine:
        notices.append(f"refined: AVIF speed {st.avif_speed}; " + (
            f"the head's gains in {levels.size} block{'s' * (levels.size > 1)} of {head_gain.BLOCK} pixels, "
            f"{np.count_nonzero(levels)} changed" if levels.any() else
            "the head as it is beat every gain map at its bytes"))
    return mask_coding.encode(levels, head_gain.BITS)


def _head_estimate(net, d: np.ndarray) -> np.ndarray:
    """The head's output as the encoder ranks the gains by: in bfloat16 on a
    CPU with native bfloat16 (AVX512-BF16), 2.2x as fast as float32 (0.14 s
    against 0.31 for 768x512), within one level of the decoder's pixels and
    the same at any thread count; maps chosen from it decode at most 0.001 dB
    below maps chosen from float32 (BENCHMARKS.md, "The head's gain map").
    Elsewhere bfloat16 is emulated and slower, so float32."""
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(native)):
        return tiling.restore_rgb(net, d)


def _refined_or_higher_quality(pic, st: EncodeSettings, whash: bytes, net, y, refined, levels,
                               notices) -> bytes:
    """A descent on an AVIF LR (--refine-iters): the refined LR's file, unless the plain LR at the
    highest LR quality that fits in its size decodes better.  Refinement makes
    the AVIF larger, and at equal size it wins on some photos and loses on
    others (BENCHMARKS.md, "Refinement on the AVIF LR"), so the encoder, which
    has the photo, compares the two at the same size."""
    data = _pack(pic, st, whash, refined, levels, net)
    cache = {}

    def size_of(q):
        cache[q] = _pack(pic, replace(st, lr_quality=q), whash, y, levels, net)
        return len(cache[q])

    q, _ = largest_quality_within(size_of, len(data), lo=st.lr_quality, hi=100)
    if q is None:           # refinement made the file smaller: nothing plain fits
        return data
    if _mse(pic, cache[q], net) < _mse(pic, data, net):
        notices.append(f"refinement lost to LR quality {q} at the same size; wrote that instead")
        return cache[q]
    return data


def _mse(pic, data: bytes, net=None) -> float:
    """The decoded file's mean squared error against the photo (0..255 scale);
    the file is the encoder's own, of a size its caller allowed."""
    return _err(pic, decode_array(data, max_pixels=OWN_FILES, net=net)[0])


# --refine's check of the scale -q chose: the ladder's neighbouring scales,
# and from x1 only up to AVIF quality 26 (-q 57): at -q 75 no photo of 19 took
# x2's file (BENCHMARKS.md, "Refinement on the AVIF LR"), and the search
# costs about 8 s for a 768x512 photo.
LADDER_NEIGHBOURS = {4: (2,), 2: (4, 1), 1: (2,)}
X1_SEARCH_MAX_QUALITY = 26


def _best_scale_within(pic, settings: EncodeSettings, st: EncodeSettings, data: bytes, notices) -> bytes:
    """--refine where -q chose the scale (st, resolved): `data`, unless a
    plain file of a neighbouring scale within its size decodes better, as a
    size target would choose it (_encode_to_target).  -q's ladder is right on
    average, not on every photo: on 8 training photos at -q 5 one photo gains
    0.75 dB at x4 instead of x2.  Its own scale needs no search: `data` is
    its plain file at speed 0 (after a descent, weighed against that scale's
    plain files by _refined_or_higher_quality; x1's at speed 0 with the map
    beat them on every photo measured)."""
    if st.scale == 1 and st.lr_quality > X1_SEARCH_MAX_QUALITY:
        return data
    others = LADDER_NEIGHBOURS[st.scale]
    other, _, err = _encode_to_target(pic, replace(settings, quality=None, size=len(data), refine=0), None,
                                      others)
    if len(other) > len(data) or err >= _mse(pic, data):
        return data
    hd = unpack(other).header
    notices.append(f"a plain x{hd.scale} file decodes better at this size ({len(other)} bytes, "
                   f"{hd.model}); wrote that instead")
    return other


# .rsc data as the functions below take it: bytes (or any buffer), a path, or a binary file
Source = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]


def _names_its_path(fn):
    """A reader of .rsc data whose errors about a file it was given by path
    name that file, as open() and images.load do."""
    @functools.wraps(fn)
    def read(data, *args, **kwargs):
        try:
            return fn(data, *args, **kwargs)
        except RscError as e:
            if isinstance(data, (str, os.PathLike)):
                raise type(e)(f"{os.fsdecode(data)}: {e}") from None
            raise
    return read


def file_bytes(data: Source, max_pixels: int = container.MAX_PIXELS) -> bytes:
    """.rsc bytes, the bytes of the file a path (str or os.PathLike) names, or
    the rest of a binary file object, a file read in bounded memory
    (container.read).  A path that cannot be opened raises the OSError
    open() raises (FileNotFoundError, IsADirectoryError, ...), as
    images.load does; a pipe or a device is read as a file."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:   # not Path(data): Path("") is the current folder
            return container.read(f, max_pixels)
    if callable(getattr(data, "read", None)):
        if isinstance(data, io.TextIOBase):   # before a read, which may fail decoding the bytes
            raise TypeError("the file gives text, not bytes: open it in binary mode ('rb')")
        return container.read(data, max_pixels)
    try:
        return bytes(memoryview(data))   # any buffer; not bytes(n), n zero bytes
    except TypeError:
        raise TypeError(f"expected .rsc bytes, a path or a file, got {type(data).__name__}") from None


def unpack(data: Source, max_pixels: int = container.MAX_PIXELS) -> container.RscFile:
    """container.unpack of bytes or a path, with model names found by weights
    hash where the file leaves them out."""
    return container.unpack(file_bytes(data, max_pixels), max_pixels=max_pixels, names=weights.name_for_hash)


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
        data, notices, _ = _encode_to_target(pic, settings, net)
    elif settings.psnr is not None:
        data, notices, db = _encode_to_psnr(pic, settings, net)   # measured by the search
    else:
        data, notices = _encode_quality(pic, settings, net, progress)
    f = unpack(data, max_pixels=OWN_FILES)   # also re-checks what we wrote
    seconds = time.perf_counter() - t0
    if measure and db is None:
        db = _decoded_psnr(pic, data, net)
    return Encoded(data, f.header, f.sizes, list(pic.notices) + notices, seconds, db if measure else None)


def _encode_quality(pic, settings: EncodeSettings, net=None, progress=None) -> tuple[bytes, list]:
    """The file at -q (not a target) -> (file, notices).  Where -q chose the
    scale, --refine checks it against its neighbours (_best_scale_within),
    and a file still at the flow's scales is checked for graphics
    (_x1_for_graphics)."""
    chosen = net is None and all(v is None for v in (settings.scale, settings.model, settings.lr_quality))
    data, st, notices = _encode_at(pic, settings, net, progress)
    own = data
    if st.refine and st.lr_codec == "avif" and chosen:
        data = _best_scale_within(pic, settings, st, data, notices)
    if chosen and data is own:   # not another scale's file
        data, notices = _x1_for_graphics(pic, settings, st, data, notices)
    return data, notices


def _encode_to_psnr(pic, settings: EncodeSettings, net=None) -> tuple[bytes, list, float]:
    """A PSNR target: the file of the lowest -q whose decode reaches it
    (RGB, or for a grey image its one channel),
    found by bisection over -q 0-100 (6-7 encodes and decodes), which is right
    where PSNR grows with -q, as the ladder was measured to make it; where -q
    100 falls short, its file, with a note.  -> (file, notices, its PSNR)."""
    tried = {}

    def psnr_at(q: int) -> float:
        if q not in tried:
            data, notices = _encode_quality(pic, replace(settings, psnr=None, quality=q), net)
            tried[q] = (data, notices, _decoded_psnr(pic, data, net))
        return tried[q][2]
    if net is None:
        settings.resolved()   # a lossless small picture has no quality to search: refused before any work
    lo, hi = 0, 101   # -q hi reaches the target throughout; 101 stands for "none does"
    while lo < hi:
        mid = (lo + hi) // 2
        if psnr_at(mid) >= settings.psnr:
            hi = mid
        else:
            lo = mid + 1
    if hi == 101:   # the last step tried -q 100
        data, notices, got = tried[100]
        return data, notices + [f"the target of {settings.psnr:g} dB is above what -q 100 reaches "
                                f"({got:.2f} dB); wrote that"], got
    data, notices, got = tried[hi]
    reached = "decodes exactly" if got == math.inf else f"reaches {got:.2f} dB"
    return data, notices + [f"-q {hi} {reached}, the target of {settings.psnr:g} dB"
                            + (f" (-q {hi - 1} decodes to {_short_of(tried[hi - 1][2])})"
                               if hi - 1 in tried else "")], got


def _short_of(db: float) -> str:
    """A PSNR below a target, rounded down: 29.99997 dB is not "30.00"."""
    return f"{math.floor(db * 100) / 100:.2f}"


def _decoded_psnr(pic, data: bytes, net=None) -> float:
    """PSNR of a file's decode against the photo: RGB, or a grey image's one
    channel, as decode delivers it; inf where it decodes exactly."""
    out = decode_array(data, max_pixels=OWN_FILES, net=net)[0]
    err = (_band_mse(np.asarray(images.to_pil(out, None, "L"))[..., None], pic.rgb[..., :1])
           if pic.mode in ("L", "LA") else _err(pic, out))
    return 10 * np.log10(255 ** 2 / err) if err else math.inf


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
    return _decoded_psnr(pic, data)


def _x1_fits(pic) -> bool:
    """Whether AVIF can decode the photo at full size (lossy_lr.too_large)."""
    return lossy_lr.too_large(*pic.rgb.shape[:2]) is None


def _too_large_for_x1(pic) -> ImageInputError:
    h, w = pic.rgb.shape[:2]
    return ImageInputError(f"{w}x{h} cannot be kept at full size (x1): {lossy_lr.too_large(h, w)}; "
                           "code it at x2 or smaller (-s 2)")


def _encode_at(pic, settings: EncodeSettings, net=None, progress=None, gains: bool = False):
    """The file at these settings (not a size target) -> (file, resolved
    settings, notices); `gains`: x1's gain map at any AVIF quality.  Where
    -q chose x1 for a photo larger than AVIF decodes, -s 2's file for that
    -q, with a note."""
    st, net_s, whash, notices = _model(settings, net)
    if st.scale == 1 and not _x1_fits(pic):
        if net is not None or settings.scale is not None or settings.model is not None:
            raise _too_large_for_x1(pic)
        h, w = pic.rgb.shape[:2]
        settings = replace(settings, scale=2)   # -s 2's own LR quality for this -q: still rising with -q
        st, net_s, whash, notices = _model(settings, None)
        notices.insert(0, f"{w}x{h} is more than AVIF decodes at full size: x2 (LR quality {st.lr_quality}) "
                          "instead")
    net = net_s
    padded = pad(pic.rgb, st.scale)
    y = tiling.forward_y(net, padded)
    levels = tiling.mask_levels(padded, st.scale, st.mask)
    refined = _refine(net, padded, y, levels, st, progress, notices) if st.refine else y
    if st.refine and st.lr_codec == "avif" and refined is not y:
        data = _refined_or_higher_quality(pic, st, whash, net, y, refined, levels, notices)
    else:
        data = _pack(pic, st, whash, refined, levels, net, notices, gains=gains)
    return data, st, notices


# -q's ladder takes the flow at -q 0-40, right for photos but not for
# graphics: text, charts and screenshots lose at half size what a full-size
# AVIF keeps cheaply (Set14's slide at -q 40: x2 8360 bytes at 26.8 dB, x1
# 8597 bytes at 31.3).  A cheap look first: the small picture, Lanczos-
# enlarged, against a fast full-size AVIF at x1's quality for this -q.  On
# 29 photos that gap was at most 4.0 dB at x2 and 5.5 at x4; only from these
# is the x1 file made (an encode and two decodes more), and it is kept where
# it decodes better per byte (BENCHMARKS.md, "Graphics").
GRAPHICS_GAP_DB = {2: 4.0, 4: 8.0}
GRAPHICS_PROBE_SPEED = 6   # 0.1 s for 768x512 where speed 3 takes 1 s
# The look codes the whole photo: 3-4 s and about 600 MiB at 24 MP, but
# 5 GiB at 144 MP.  Larger images (panoramas, scans) keep the ladder's scale.
GRAPHICS_MAX_PIXELS = 1 << 25


def graphics_gap(pic, data: bytes, quality: int) -> float:
    """How far the small picture of `data` (at x2 or x4, AVIF), Lanczos-
    enlarged, is below a fast full-size AVIF at x1's quality for -q
    `quality`, in dB."""
    h, w = pic.rgb.shape[:2]
    f = unpack(data, max_pixels=OWN_FILES)
    s = f.header.scale
    lr = np.clip(np.round(lr_image(f.sections[container.SECTION_LR], f.header)), 0, 255).astype(np.uint8)
    up = cv2.resize(lr, (lr.shape[1] * s, lr.shape[0] * s), interpolation=cv2.INTER_LANCZOS4)[:h, :w]
    probe = lossy_lr.decode(lossy_lr.encode(pic.rgb, x1_quality(quality), GRAPHICS_PROBE_SPEED), pic.rgb.shape)
    return _gap_db(_err(pic, up), _err(pic, probe))


def _x1_for_graphics(pic, settings: EncodeSettings, st: EncodeSettings, data: bytes,
                     notices: list) -> tuple[bytes, list]:
    """-q's file `data` at resolved settings `st` and its notices, or where
    `data` is at the flow's scale and the photo is graphics, an x1 file at
    the AVIF quality x1's part of the ladder gives this -q, with its gain
    map (the head is trained on photos), and its notices, where that decodes
    better by more than its extra bytes would buy (head_gain.DB_PER_PERCENT)."""
    looked = (st.scale in GRAPHICS_GAP_DB and st.lr_codec == "avif" and _x1_fits(pic)
              and pic.rgb.shape[0] * pic.rgb.shape[1] <= GRAPHICS_MAX_PIXELS)
    if not looked or graphics_gap(pic, data, settings.quality) < GRAPHICS_GAP_DB[st.scale]:
        return data, notices
    q1 = x1_quality(settings.quality)
    x1, _, x1_notices = _encode_at(pic, replace(settings, quality=None, scale=1, lr_quality=q1), gains=True)
    gain = _gap_db(_mse(pic, data), _mse(pic, x1))
    if gain <= max(0.0, head_gain.DB_PER_PERCENT * 100 * (len(x1) / len(data) - 1)):
        return data, notices
    return x1, x1_notices + [f"graphics: a full-size file (x1, AVIF quality {q1}) decodes {gain:.1f} dB "
                             f"better in {len(x1)} bytes than x{st.scale}'s {len(data)}; wrote that instead"]


def _err(pic, rgb: np.ndarray) -> float:
    """Mean squared error of an (h, w, 3) picture against the photo."""
    return _band_mse(rgb, pic.rgb)


def _band_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two (h, w, c) pictures, in bands of rows (no
    float copy of a large photo)."""
    total = 0.0
    for i in range(0, a.shape[0], 256):
        d = a[i:i + 256].astype(np.float32) - b[i:i + 256]
        total += float(np.einsum("ijk,ijk->", d, d, dtype=np.float64))
    return total / a.size


def _gap_db(worse: float, better: float) -> float:
    """How many dB of PSNR an MSE of `better` is above one of `worse`."""
    return 10 * np.log10(max(worse, 1e-6) / max(better, 1e-6))


def largest_quality_within(size_of, target: int, lo: int = 1, hi: int = 100):
    """Largest quality q in [lo, hi] with size_of(q) <= target, by bisection
    (file size grows with quality).  -> (q, size) or (None, size_of(lo)) when
    even the lowest quality is larger than the target."""
    cache = {}

    def size(q):
        if q not in cache:
            cache[q] = size_of(q)
        return cache[q]

    if size(lo) > target:
        return None, size(lo)
    if size(hi) <= target:
        return hi, size(hi)
    while hi - lo > 1:          # invariant: size(lo) <= target < size(hi)
        mid = (lo + hi) // 2
        if size(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, size(lo)


TARGET_MET = 0.95   # a file this share of a size target or more meets it; a smaller largest file is said


def _encode_to_target(pic, settings: EncodeSettings, net, scales=None) -> tuple[bytes, list, float]:
    """A bpp or size target: per scale (`scales`, or the settings' own,
    EncodeSettings.target_scales), the highest LR quality whose whole file
    fits (bisection: AVIF bytes grow with quality); then the candidate the
    decoder reconstructs best.  -> (file, notices, its decoded MSE)."""
    h, w = pic.rgb.shape[:2]
    target = settings.size if settings.size is not None else int(settings.bpp * h * w / 8)
    scales = settings.target_scales() if scales is None else scales
    if not _x1_fits(pic):
        if list(scales) == [1]:
            raise _too_large_for_x1(pic)
        scales = [s for s in scales if s != 1]
    best = None
    for s in scales:
        st, net_s, whash, notes = _model(replace(settings, scale=s, bpp=None, size=None, lr_codec="avif",
                                                 lr_quality=0), net)
        padded = pad(pic.rgb, s)
        y = tiling.forward_y(net_s, padded)
        levels = tiling.mask_levels(padded, s, st.mask)
        cache = {}

        def size_of(q):   # without x1's gain map (tens of bytes, and a head's run to choose)
            if q not in cache:
                cache[q] = _pack(pic, replace(st, lr_quality=q), whash, y, levels)
            return len(cache[q])
        q, _ = largest_quality_within(size_of, target, lo=0, hi=100)
        fits = q is not None
        q = 0 if q is None else q

        def candidate(q):
            """The file at LR quality q with the scale's default decoder for
            it (or the one asked for), x1's gain map included."""
            # x1's LR is the photo's AVIF at q whatever the model: the search's own
            lr = unpack(cache[q]).sections[container.SECTION_LR] if s == 1 and q in cache else None
            if net is None and settings.model is None:
                st_q = replace(st, model=None, lr_quality=q, threshold=settings.threshold,
                               temperature=settings.temperature).resolved()
                if st_q.model != st.model:
                    net_q = weights.load_model(st_q.model)
                    # decoders that share a flow and differ in their head: Y and the mask stay
                    y_q = y if net_q.same_forward_levels(net_s) else tiling.forward_y(net_q, padded)
                    levels_q = levels if st_q.mask == st.mask else tiling.mask_levels(padded, s, st_q.mask)
                    return _pack(pic, st_q, weights.hash_prefix(st_q.model), y_q, levels_q, net_q,
                                 lr=lr), net_q
            if s == 1:
                return _pack(pic, replace(st, lr_quality=q), whash, y, levels, net_s, lr=lr), net_s
            return cache[q], net_s
        data_q, net_q = candidate(q)
        while fits and len(data_q) > target and q > 0:   # the gain map pushed it over: a step down
            q -= 1
            data_q, net_q = candidate(q)
        fits = fits and len(data_q) <= target
        net_s = net_q
        err = _mse(pic, data_q, net_s)
        key = (fits, -err if fits else -len(data_q))   # a fitting file first, then the best
        if best is None or key > best[0]:
            best = (key, data_q, notes, err, q, s)
    (fits, _), data, notices, err, q, s = best
    count = f"{target} byte{'s' * (target != 1)}"
    asked = f"{settings.bpp:g} bpp, {count}" if settings.size is None else count
    if not fits:
        notices = notices + [f"the target of {asked} is below the smallest file; "
                             f"wrote the smallest ({len(data)} bytes)"]
    elif q == 100 and len(data) < TARGET_MET * target:   # "met within a few per cent, or the nearest"
        notices = notices + [f"the target of {asked} is above the largest file (x{s}, AVIF quality 100); "
                             f"wrote that ({len(data)} bytes, {100 * len(data) / target:.0f} % of it)"]
    return data, notices, err


def lr_payload(y, st: EncodeSettings) -> bytes:
    """The LR section's payload for Y (1, 3, h, w): AVIF at the settings'
    quality, stored as its bare AV1 item where that rebuilds the same file
    (codec id 7 where its av1C and nclx are the usual ones), or the codes on
    the LR step's grid, losslessly."""
    if st.lr_codec == "avif":
        lr = lossy_lr.to_uint8(y)[0]
        avif = lossy_lr.encode(lr, st.lr_quality, st.avif_speed)
        bare = av1_item.split(avif, lr.shape)
        if not bare:
            return bytes([container.AVIF]) + avif
        long = bytes([container.AV1]) + bare
        return container.short_av1(long) or long
    return lossless.encode(lr_quant.lr_codes(y, st.lr_step, st.lr_space))


def lr_image(payload: bytes, hd: Header) -> np.ndarray:
    """The LR section's payload -> the LR the flow inverts, (h, w, 3) on the 0..255 scale."""
    shape = hd.lr_size + (3,)
    if payload[0] == container.AV1_SHORT:
        payload = container.long_av1(payload)
    if payload[0] == container.AV1:
        return lossy_lr.decode(av1_item.wrap(payload[1:], shape), shape)
    if hd.lr_codec == "avif":
        av1_item.check_whole(payload[1:], shape, hd.version)
        return lossy_lr.decode(payload[1:], shape)
    return lr_quant.lr_from_codes(lossless.decode(payload, shape, "LR"), hd.lr_step, hd.lr_space)


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
    metadata the file keeps).  None takes the
    model's own value; an unknown option is a ValueError.  max_pixels: refuse
    larger images (2^27 by default; ImageInputError)."""
    return encode_ex(image, EncodeSettings.from_options(scale, **options), max_pixels=max_pixels).data


@_names_its_path
def decode_array(data: Source, max_pixels: int = container.MAX_PIXELS, net=None,
                 temperature: float | None = None, seed: int | None = None, fast: bool = False):
    """.rsc bytes -> (rgb uint8 HxWx3, alpha or None, header).  `net`: the
    network that encode_ex() was given, for files of an unregistered one.
    `temperature`, `seed`: draw Z with these instead of the file's own.
    `fast`: skip the restoration head (`decode`)."""
    return _decode(unpack(data, max_pixels=max_pixels), net, temperature, seed, fast)


def _redraw(hd: Header, temperature, seed) -> Header:
    """The header with the caller's Z temperature and seed in place of the file's."""
    if temperature is None and seed is None:
        return hd
    t = hd.z_temperature if temperature is None else temperature
    s = hd.z_seed if seed is None else seed
    st = EncodeSettings(temperature=t, seed=s).validate()   # as the encoder takes them: no "0.5" or True
    return replace(hd, z_temperature=float(st.temperature), z_seed=st.seed)


def _decode(f: container.RscFile, net=None, temperature=None, seed=None, fast=False):
    if not isinstance(fast, bool):   # fast="no" would be true
        raise ValueError(f"fast must be True or False, got {fast!r}")
    hd, net, lr, levels, alpha = _sections(f, net, temperature, seed)
    if hd.scale == 1:   # no flow: the AVIF decode, restored by the head at the file's gains
        rgb = lr if fast else _restore_x1(net, lr, levels)
    else:
        dec_in = DecoderInput(net, levels, hd.mask_bits, hd.z_seed, hd.z_temperature)
        rgb = tiling.inverse_rgb(net, lr, dec_in, restore=not fast)[: hd.height, : hd.width]
    return np.ascontiguousarray(rgb), alpha, hd


def _sections(f: container.RscFile, net=None, temperature=None, seed=None) -> tuple:
    """All a decode needs before the network runs: every section decoded (a
    damaged one fails first) and the model -> (header, net, small picture,
    mask levels or x1's gain levels, alpha or None)."""
    hd = _redraw(f.header, temperature, seed)
    if net is None:
        net = weights.load_model(hd.model, expect_hash=hd.weights_hash)
    if net.config.scale != hd.scale:
        raise CorruptError(f"corrupt .rsc file (scale x{hd.scale} but model {hd.model!r} "
                           f"is x{net.config.scale})")
    lr = lr_image(f.sections[container.SECTION_LR], hd)
    if hd.scale == 1:
        levels = _gain_levels(net, f.sections[container.SECTION_MASK], hd)
    else:
        levels = mask_coding.decode(f.sections[container.SECTION_MASK], hd.lr_size, hd.mask_bits)
    alpha = None
    if hd.has_alpha:
        alpha = lossless.decode(f.sections[container.SECTION_ALPHA], (hd.height, hd.width), "alpha")
    return hd, net, lr, levels, alpha


@_names_its_path
def check(data: Source, max_pixels: int = container.MAX_PIXELS) -> Header:
    """Whether .rsc data would decode, without running the network: every
    section decoded (the small picture, the mask or gain map, the alpha
    plane, the metadata) and the model it needs found installed and whole
    -> its header; the RscError decode would raise otherwise."""
    f = unpack(data, max_pixels=max_pixels)
    _metadata(f)
    return _sections(f)[0]


def _gain_levels(net, mask: bytes, hd: Header) -> np.ndarray | None:
    """An x1 file's gain map (version 9), checked even where --fast leaves
    the head out, or None (an empty map, version 8: the head as it is)."""
    if mask[0] == mask_coding.EMPTY:
        return None
    if net.head is None:
        raise CorruptError(f"corrupt .rsc file (a gain map, but model {hd.model!r} has no head)")
    levels = mask_coding.decode(mask, head_gain.grid(hd.height, hd.width), head_gain.BITS)
    if not levels.any():   # one file, one encoding: that map is version 8's empty section
        raise CorruptError("corrupt .rsc file (a gain map of all level 0 in a version 9 file)")
    return levels


def _restore_x1(net, lr: np.ndarray, levels: np.ndarray | None) -> np.ndarray:
    """An x1 file's AVIF decode through the model's head, at the gains of its map."""
    restored = tiling.restore_rgb(net, lr)
    return restored if levels is None else head_gain.apply(lr, restored, levels)


@_names_its_path
def thumbnail(data: Source, max_pixels: int = container.MAX_PIXELS) -> np.ndarray:
    """The LR image inside .rsc bytes, (ceil(H/s), ceil(W/s), 3) uint8, without
    running the flow: a viewable thumbnail of the picture."""
    return _thumbnail(unpack(data, max_pixels=max_pixels))


def _thumbnail(f: container.RscFile) -> np.ndarray:
    lr = lr_image(f.sections[container.SECTION_LR], f.header)
    return np.clip(np.round(lr), 0, 255).astype(np.uint8) if lr.dtype != np.uint8 else lr


@_names_its_path
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


@_names_its_path
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


@_names_its_path
def grey_with_icc(data: Source, max_pixels: int = container.MAX_PIXELS) -> bool:
    """Whether the file is grey with an ICC profile, which (images.load keeps
    a profile of the image's own colour space) is a grey one."""
    f = unpack(data, max_pixels=max_pixels)
    return f.header.mode in ("L", "LA") and "icc_profile" in _metadata(f)


@_names_its_path
def metadata(data: Source, max_pixels: int = container.MAX_PIXELS) -> dict:
    """The source's metadata kept in .rsc bytes: {"exif", "icc_profile",
    "xmp": bytes}, each key only when stored (no pixel decoding)."""
    return _metadata(unpack(data, max_pixels=max_pixels))


def _metadata(f: container.RscFile) -> dict:
    if not f.header.has_metadata:
        return {}
    return container.unpack_metadata(f.sections[container.SECTION_METADATA])


@_names_its_path
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
    rgb, alpha, hd = _decode(f, None, temperature, seed, fast)
    im = images.to_pil(rgb, alpha, hd.mode)
    im.info.update(meta)
    return im


@_names_its_path
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

"""One .rsc file at settings that fix its scale, model and small
picture's quality: pad to a multiple of s (symmetric reflection) -> flow
forward -> Y through AVIF (lossy_lr.py; or, with lr_codec "lossless",
rounded to the LR step's grid and its codes stored losslessly) -> the
boundary mask of the padded image at LR resolution, entropy-coded ->
container.  At scale 1 there is no flow: the "LR" is the photo itself,
through AVIF, with the gains per block of the restoration head that the
encoder chooses (head_gain.py).  Which file to write is rate_control.py's."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from . import (av1_item, container, decoder, head_gain, lossless, lossy_lr, lr_quant, mask_coding, refine, tiling,
               weights)
from .container import Header
from .errors import ImageInputError
from .latent import DecoderInput
from .settings import EncodeSettings
from .tiling import to_tensor


DEFAULT_SEED = EncodeSettings.seed
UNREGISTERED = "unregistered"   # model name in files from a network passed in (training validation)


def refine_lr(net, padded, y, levels, st: EncodeSettings, progress, notices):
    """The LR refined against the exact decoder: same B, same Z, same rounding;
    `y` itself where no step improved on it (a whole image)."""
    if st.scale == 1:   # no LR to refine: pack_file chooses the head's gains instead
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


def resolve(settings: EncodeSettings, net):
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


def pack_file(pic, st: EncodeSettings, whash: bytes, y, levels, net=None, notices=None,
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
    d = decoder.lr_image(lr, header)
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


def x1_fits(pic) -> bool:
    """Whether AVIF can decode the photo at full size (lossy_lr.too_large)."""
    return lossy_lr.too_large(*pic.rgb.shape[:2]) is None


def too_large_for_x1(pic) -> ImageInputError:
    h, w = pic.rgb.shape[:2]
    return ImageInputError(f"{w}x{h} cannot be kept at full size (x1): {lossy_lr.too_large(h, w)}; "
                           "code it at x2 or smaller (-s 2)")


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

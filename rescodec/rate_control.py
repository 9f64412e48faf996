"""Choosing the file to write: -q's file (the ladder's scale, checked for
graphics, and with --refine against the neighbouring scales at its size),
a size or bpp target (per scale, the highest quality that fits, then the
best decode), and a PSNR target (the lowest -q that reaches it)."""
from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from . import container, decoder, encoder, head_gain, images, lossy_lr, tiling, weights
from .settings import EncodeSettings, x1_quality
from .tiling import pad


def refined_or_higher_quality(pic, st: EncodeSettings, whash: bytes, net, y, refined, levels,
                               notices) -> bytes:
    """A descent on an AVIF LR (--refine-iters): the refined LR's file, unless the plain LR at the
    highest LR quality that fits in its size decodes better.  Refinement makes
    the AVIF larger, and at equal size it wins on some photos and loses on
    others (BENCHMARKS.md, "Refinement on the AVIF LR"), so the encoder, which
    has the photo, compares the two at the same size."""
    data = encoder.pack_file(pic, st, whash, refined, levels, net)
    cache = {}

    def size_of(q):
        cache[q] = encoder.pack_file(pic, replace(st, lr_quality=q), whash, y, levels, net)
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
    return _err(pic, decoder.decode_array(data, max_pixels=decoder.OWN_FILES, net=net)[0])


# --refine's check of the scale -q chose: the ladder's neighbouring scales,
# and from x1 only up to AVIF quality 26 (-q 57): at -q 75 no photo of 19 took
# x2's file (BENCHMARKS.md, "Refinement on the AVIF LR"), and the search
# costs about 8 s for a 768x512 photo.
LADDER_NEIGHBOURS = {4: (2,), 2: (4, 1), 1: (2,)}
X1_SEARCH_MAX_QUALITY = 26


def _best_scale_within(pic, settings: EncodeSettings, st: EncodeSettings, data: bytes, notices) -> bytes:
    """--refine where -q chose the scale (st, resolved): `data`, unless a
    plain file of a neighbouring scale within its size decodes better, as a
    size target would choose it (encode_to_target).  -q's ladder is right on
    average, not on every photo: on 8 training photos at -q 5 one photo gains
    0.75 dB at x4 instead of x2.  Its own scale needs no search: `data` is
    its plain file at speed 0 (after a descent, weighed against that scale's
    plain files by refined_or_higher_quality; x1's at speed 0 with the map
    beat them on every photo measured)."""
    if st.scale == 1 and st.lr_quality > X1_SEARCH_MAX_QUALITY:
        return data
    others = LADDER_NEIGHBOURS[st.scale]
    other, _, err = encode_to_target(pic, replace(settings, quality=None, size=len(data), refine=0), None,
                                      others)
    if len(other) > len(data) or err >= _mse(pic, data):
        return data
    hd = decoder.unpack(other).header
    notices.append(f"a plain x{hd.scale} file decodes better at this size ({len(other)} bytes, "
                   f"{hd.model}); wrote that instead")
    return other


def encode_quality(pic, settings: EncodeSettings, net=None, progress=None) -> tuple[bytes, list]:
    """The file at -q (not a target) -> (file, notices).  Where -q chose the
    scale, a file at the flow's scales is checked for graphics
    (_x1_for_graphics), and one that stays there is checked by --refine
    against its neighbours (_best_scale_within).  Graphics first: the
    neighbours' search keeps to the small picture's size, and a screenshot's
    x1 file at that size was 1.6-5.3 dB below plain -q's."""
    chosen = net is None and all(v is None for v in (settings.scale, settings.model, settings.lr_quality))
    data, st, notices = encode_at(pic, settings, net, progress)
    own = data
    if chosen:
        data, notices = _x1_for_graphics(pic, settings, st, data, notices)
    if data is own and st.refine and st.lr_codec == "avif" and chosen:
        data = _best_scale_within(pic, settings, st, data, notices)
    return data, notices


def encode_to_psnr(pic, settings: EncodeSettings, net=None) -> tuple[bytes, list, float]:
    """A PSNR target: the file of the lowest -q whose decode reaches it
    (RGB, or for a grey image its one channel),
    found by bisection over -q 0-100 (6-7 encodes and decodes), which is right
    where PSNR grows with -q, as the ladder was measured to make it; where -q
    100 falls short, its file, with a note.  -> (file, notices, its PSNR)."""
    tried = {}

    def psnr_at(q: int) -> float:
        if q not in tried:
            data, notices = encode_quality(pic, replace(settings, psnr=None, quality=q), net)
            tried[q] = (data, notices, decoded_psnr(pic, data, net))
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


def decoded_psnr(pic, data: bytes, net=None) -> float:
    """PSNR of a file's decode against the photo: RGB, or a grey image's one
    channel, as decode delivers it; inf where it decodes exactly."""
    out = decoder.decode_array(data, max_pixels=decoder.OWN_FILES, net=net)[0]
    err = (_band_mse(np.asarray(images.to_pil(out, None, "L"))[..., None], pic.rgb[..., :1])
           if pic.mode in ("L", "LA") else _err(pic, out))
    return 10 * np.log10(255 ** 2 / err) if err else math.inf


def encode_at(pic, settings: EncodeSettings, net=None, progress=None, gains: bool = False):
    """The file at these settings (not a size target) -> (file, resolved
    settings, notices); `gains`: x1's gain map at any AVIF quality.  Where
    -q chose x1 for a photo larger than AVIF decodes, -s 2's file for that
    -q, with a note."""
    st, net_s, whash, notices = encoder.resolve(settings, net)
    if st.scale == 1 and not encoder.x1_fits(pic):
        if net is not None or settings.scale is not None or settings.model is not None:
            raise encoder.too_large_for_x1(pic)
        h, w = pic.rgb.shape[:2]
        settings = replace(settings, scale=2)   # -s 2's own LR quality for this -q: still rising with -q
        st, net_s, whash, notices = encoder.resolve(settings, None)
        notices.insert(0, f"{w}x{h} is more than AVIF decodes at full size: x2 (LR quality {st.lr_quality}) "
                          "instead")
    net = net_s
    padded = pad(pic.rgb, st.scale)
    y = tiling.forward_y(net, padded)
    levels = tiling.mask_levels(padded, st.scale, st.mask)
    refined = encoder.refine_lr(net, padded, y, levels, st, progress, notices) if st.refine else y
    if st.refine and st.lr_codec == "avif" and refined is not y:
        data = refined_or_higher_quality(pic, st, whash, net, y, refined, levels, notices)
    else:
        data = encoder.pack_file(pic, st, whash, refined, levels, net, notices, gains=gains)
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
    f = decoder.unpack(data, max_pixels=decoder.OWN_FILES)
    s = f.header.scale
    lr = np.clip(np.round(decoder.lr_image(f.sections[container.SECTION_LR], f.header)), 0, 255).astype(np.uint8)
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
    looked = (st.scale in GRAPHICS_GAP_DB and st.lr_codec == "avif" and encoder.x1_fits(pic)
              and pic.rgb.shape[0] * pic.rgb.shape[1] <= GRAPHICS_MAX_PIXELS)
    if not looked or graphics_gap(pic, data, settings.quality) < GRAPHICS_GAP_DB[st.scale]:
        return data, notices
    q1 = x1_quality(settings.quality)
    x1, _, x1_notices = encode_at(pic, replace(settings, quality=None, scale=1, lr_quality=q1), gains=True)
    gain = _gap_db(_mse(pic, data), _mse(pic, x1))
    # the extra bytes priced at photos' slope in log terms: 0.08 dB per 1 % holds
    # for a few per cent, not for a file twice the size
    if gain <= max(0.0, head_gain.DB_PER_PERCENT * 100 * math.log(len(x1) / len(data))):
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


def encode_to_target(pic, settings: EncodeSettings, net, scales=None) -> tuple[bytes, list, float]:
    """A bpp or size target: per scale (`scales`, or the settings' own,
    EncodeSettings.target_scales), the highest LR quality whose whole file
    fits (bisection: AVIF bytes grow with quality); then the candidate the
    decoder reconstructs best.  -> (file, notices, its decoded MSE)."""
    h, w = pic.rgb.shape[:2]
    target = settings.size if settings.size is not None else int(settings.bpp * h * w / 8)
    scales = settings.target_scales() if scales is None else scales
    if not encoder.x1_fits(pic):
        if list(scales) == [1]:
            raise encoder.too_large_for_x1(pic)
        scales = [s for s in scales if s != 1]
    best = None
    for s in scales:
        st, net_s, whash, notes = encoder.resolve(replace(settings, scale=s, bpp=None, size=None, lr_codec="avif",
                                                 lr_quality=0), net)
        padded = pad(pic.rgb, s)
        y = tiling.forward_y(net_s, padded)
        levels = tiling.mask_levels(padded, s, st.mask)
        cache = {}

        def size_of(q):   # without x1's gain map (tens of bytes, and a head's run to choose)
            if q not in cache:
                cache[q] = encoder.pack_file(pic, replace(st, lr_quality=q), whash, y, levels)
            return len(cache[q])
        q, _ = largest_quality_within(size_of, target, lo=0, hi=100)
        fits = q is not None
        q = 0 if q is None else q

        def candidate(q):
            """The file at LR quality q with the scale's default decoder for
            it (or the one asked for), x1's gain map included."""
            # x1's LR is the photo's AVIF at q whatever the model: the search's own
            lr = decoder.unpack(cache[q]).sections[container.SECTION_LR] if s == 1 and q in cache else None
            if net is None and settings.model is None:
                asked = {} if s == 1 else dict(threshold=settings.threshold, temperature=settings.temperature)
                st_q = replace(st, model=None, lr_quality=q, **asked).resolved()   # x1 has no mask or Z
                if st_q.model != st.model:
                    net_q = weights.load_model(st_q.model)
                    # decoders that share a flow and differ in their head: Y and the mask stay
                    y_q = y if net_q.same_forward_levels(net_s) else tiling.forward_y(net_q, padded)
                    levels_q = levels if st_q.mask == st.mask else tiling.mask_levels(padded, s, st_q.mask)
                    return encoder.pack_file(pic, st_q, weights.hash_prefix(st_q.model), y_q, levels_q, net_q,
                                 lr=lr), net_q
            if s == 1:
                return encoder.pack_file(pic, replace(st, lr_quality=q), whash, y, levels, net_s, lr=lr), net_s
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
            best = (key, data_q, notes, err, q, s, len(cache[q + 1]) if q + 1 in cache else None)
    (fits, _), data, notices, err, q, s, next_size = best
    count = f"{target} byte{'s' * (target != 1)}"
    asked = f"{settings.bpp:g} bpp, {count}" if settings.size is None else count
    if not fits:
        sizes = decoder.unpack(data).sizes
        other = {k: sizes[k] for k in ("alpha", "metadata") if sizes.get(k)}
        why = ""
        if sum(other.values()) > len(data) / 2:   # the picture is not what is large
            why = ("; of it " + " and ".join(f"{n} bytes are {k}" for k, n in other.items())
                   + (" (--metadata none leaves the metadata out)" if "metadata" in other else ""))
        notices = notices + [f"the target of {asked} is below the smallest file; "
                             f"wrote the smallest ({len(data)} bytes){why}"]
    elif q == 100 and len(data) < TARGET_MET * target:   # "met within a few per cent, or the nearest"
        notices = notices + [f"the target of {asked} is above the largest file (x{s}, AVIF quality 100); "
                             f"wrote that ({len(data)} bytes, {100 * len(data) / target:.0f} % of it)"]
    elif len(data) < TARGET_MET * target:   # AVIF's qualities step past it
        notices = notices + [f"the target of {asked}: the file that decodes best within it is {len(data)} "
                             f"bytes ({100 * len(data) / target:.0f} % of it)"
                             + (f"; x{s}'s at the next AVIF quality is {next_size}"
                                if next_size and next_size > target else "")]
    return data, notices, err

"""The encoder's settings as one value, validated in one place.

`EncodeSettings` holds everything that decides a file's bytes: the scale and
model, the boundary mask (BDFlow Algorithm 1), the LR quantiser, Z (seed and
temperature) and refinement.  Fields left None take the model's own value from
its card in the registry (`resolved()`, weights.py).  The fields a file
keeps map one to one onto the container header (`header()`, `of_header()`);
the targets, LR quality and speed, refinement and device shape the bytes but
are not stored.  The container checks a file's fields with the same
`validate()`.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, fields, replace

import numpy as np

from .mask import MaskParams

SCALES = (1, 2, 4, 8, 16)    # 1: the photo itself through AVIF, restored by a head (no flow)
MAX_LR_STEP = 16            # the container keeps step - 1 in 4 bits
LR_SPACES = ("rgb", "ycc")  # see lr_quant.py
LR_CODECS = ("lossless", "avif")   # the LR's codes stored losslessly (lossless.py), or AVIF (lossy_lr.py)
LR_SPEEDS = range(0, 11)    # libaom's speeds: 0 slowest (smallest files) .. 10 fastest
MAX_TEMPERATURE = 4.0       # beyond this Z is noise, never a useful decode
REFINE_METHODS = ("rd", "hcd")   # see refine.py
DEVICES = ("auto", "cpu", "cuda")
METADATA_KEYS = {"exif": "exif", "icc": "icc_profile", "xmp": "xmp"}   # --metadata's names -> Pillow's
MAX_NAME = 64                                           # model names are short identifiers
NAME_RE = re.compile(rf"[a-z0-9._-]{{1,{MAX_NAME}}}\Z")
# (\Z, not $, which also matches before a last newline)
DEFAULT_QUALITY = 75
MAX_PSNR = 100.0            # dB; above, no decode short of an exact one (infinite) would tell them apart
LOSSLESS_SCALE = 2          # the scale of a lossless-LR file when none is asked for
# -q/--quality -> (scale, AVIF quality of the LR): piecewise linear between
# these points, one scale per segment.  Measured on training photos
# (BENCHMARKS.md, "Quality ladder"): x2 is the better scale wherever it
# reaches (0.30's decoders: +0.11 dB above x4 at 0.022 bpp, +0.09 at 0.034), so x4 only goes
# below x2 at LR quality 0: x4 up to LR quality 2 (0.013 bpp, 21.4 dB; at 4
# it is larger than x2 at 0 on 7 of 8 photos), then x2 from 0 (0.017 bpp,
# 22.1 dB), so bytes and PSNR both grow with -q.  From about 0.19 bpp the
# full-size photo through AVIF with x1's head is ahead of x2 at the same size
# (and x2's own curve flattens), so x2 stops at LR quality 27 and x1 takes
# over at AVIF quality 14, larger on every training photo (x1 at 13 was
# smaller than x2 at 30 on 2 of 8); -q 75, the default, is x1 at 40 (about
# the bytes of x2 at LR quality 59), -q 100 x1 at 90.
QUALITY_LADDER = ((0, 4, 0), (4, 4, 2), (5, 2, 0), (40, 2, 27), (41, 1, 14), (75, 1, 40), (100, 1, 90))


def ladder(quality: int) -> tuple[int, int]:
    """-q (0..100) -> (scale, LR quality)."""
    for (q0, s0, l0), (q1, s1, l1) in zip(QUALITY_LADDER, QUALITY_LADDER[1:]):
        if s0 == s1 and q0 <= quality <= q1:
            return s0, round(l0 + (l1 - l0) * (quality - q0) / (q1 - q0))
    raise ValueError(f"quality must be an integer from 0 to 100, got {quality!r}")


def x1_quality(quality: int) -> int:
    """x1's AVIF quality for a -q where the ladder takes the flow (0-40):
    x1's part of the ladder carried down to AVIF quality 0 at -q 0, for
    graphics (rate_control._x1_for_graphics)."""
    q0, _, l0 = next(p for p in QUALITY_LADDER if p[1] == 1)
    return round(l0 * min(quality, q0) / q0)


def lr_storage(codec: str, step: int, space: str) -> tuple[int, str]:
    """The LR quantiser (step, space) that goes with an LR codec: the grid and
    colour space only exist for the lossless LR; AVIF takes 8-bit RGB."""
    return (1, "rgb") if codec == "avif" else (step, space)


def _is_int(x) -> bool:
    """An integer option: a bool (True == 1) or a float (2.0 == 2) is not one."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    """A number option: a str ("0.2") or a bool is not one."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class EncodeSettings:
    scale: int | None = None           # None: chosen by quality, or per image for a bpp / size target
    quality: int | None = None         # -q, 0..100: higher, bigger and better; None: DEFAULT_QUALITY
    bpp: float | None = None           # target bits per pixel of the whole file
    size: int | None = None            # target bytes of the whole file
    psnr: float | None = None          # target PSNR (dB; RGB, a grey image's one channel): the lowest -q reaching it
    model: str | None = None           # a registered name; None: the scale's default
    bits: int = 1                      # mask bits (Table 4)
    threshold: float | None = None     # mask T on the 0..255 Sobel scale; None: the model's
    norm: int = 2                      # mask gradient norm, 1 or 2
    sigma: float = 1.0                 # mask blur
    lr_step: int | None = None         # LR quantiser step (lr_quant.py); None: the model's
    lr_space: str | None = None        # LR codes' colour space; None: the model's
    lr_codec: str | None = None        # how the LR is stored (LR_CODECS); None: the model's
    lr_quality: int | None = None      # AVIF quality of the LR, 0..100; None: the model's
    lr_speed: int | None = None        # AVIF encoder speed of the LR (LR_SPEEDS); None: lossy_lr.default_speed
    seed: int = 0                      # Z's seed, stored in the file
    temperature: float | None = None   # Z's scale at decode; None: the model's (README "Texture and temperature")
    refine: int = 0                    # refinement: 0 (False) off; True the encoder's own; N: N descent steps
    refine_method: str = "rd"
    refine_eps: float | None = None    # hcd's radius and step; None: the scale's
    refine_alpha: float | None = None
    refine_lambda: float | None = None  # rd's rate weight; None: the scale's
    device: str = "auto"               # where refinement runs
    metadata: str = "all"              # what of the source's metadata the file keeps: all, none, or
                                       # a comma list of exif, icc, xmp (cwebp's -metadata)

    def __post_init__(self):
        # numpy's integers, floats and bools (a value from an array) stand for
        # Python's; strings stay as they are, for validate() to refuse
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.bool_):
                object.__setattr__(self, f.name, bool(v))
            elif isinstance(v, numbers.Number) and not isinstance(v, (bool, int, float)):
                if _is_int(v):
                    object.__setattr__(self, f.name, int(v))
                elif _is_real(v):
                    object.__setattr__(self, f.name, float(v))

    @classmethod
    def from_options(cls, scale: int | None = None, **options) -> "EncodeSettings":
        """encode()'s keyword options -> settings; an unknown name is a
        ValueError, and None stands for an option not given (an app that
        passes its own config's gaps through gets the defaults)."""
        cls.check_names(options)
        return cls(scale=scale, **{k: v for k, v in options.items() if v is not None})

    @classmethod
    def check_names(cls, options, also=()) -> None:
        """ValueError naming the options encode() does not take, and those it
        does (with `also`: a caller's own, as the Pillow plugin's speed)."""
        known = {f.name for f in fields(cls)} | {"max_pixels", *also}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown encode option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")

    @property
    def avif_speed(self) -> int:
        """The AVIF encoder speed of a (resolved) file's LR: lr_speed, or the
        default for its scale, LR quality and refinement (lossy_lr.default_speed)."""
        from .lossy_lr import default_speed
        if self.lr_speed is not None:
            return self.lr_speed
        return default_speed(self.scale, self.lr_quality, bool(self.refine))

    @property
    def refine_steps(self) -> int:
        """The descent's steps (refine.py) of a (resolved) file's refinement:
        none at x1, which has no small picture; `refine` where it is a number;
        for refine=True the method's own on a lossless LR, and none on an AVIF
        LR, where --refine codes the LR at AVIF speed 0 instead: at equal size
        the descent slides along AVIF's own curve (-0.03 to +0.02 dB on average
        at x2 and x4) and speed 0 is ahead of it (+0.03 to +0.10 dB;
        BENCHMARKS.md, "Refinement on the AVIF LR")."""
        if self.scale == 1:
            return 0
        if self.refine is not True:
            return int(self.refine)
        from .refine import default_steps
        return 0 if self.lr_codec == "avif" else default_steps(self.refine_method)

    @property
    def kept_metadata(self) -> frozenset:
        """The metadata keys (images.Picture's, Pillow's) the file keeps."""
        if self.metadata in ("all", "none"):
            return frozenset(METADATA_KEYS.values()) if self.metadata == "all" else frozenset()
        return frozenset(METADATA_KEYS[part] for part in self.metadata.split(","))

    @property
    def mask(self) -> MaskParams:
        return MaskParams(bits=self.bits, threshold=float(self.threshold), norm=self.norm,
                          sigma=float(self.sigma))

    def validate(self) -> "EncodeSettings":
        """Every range check of the encoder's settings; ValueError naming the field."""
        if self.scale is not None and not (_is_int(self.scale) and self.scale in SCALES):
            raise ValueError(f"unsupported scale {self.scale!r}; choose from 1, 2, 4, 8, 16")
        if self.quality is not None and not (_is_int(self.quality) and 0 <= self.quality <= 100):
            raise ValueError(f"quality must be an integer from 0 to 100, got {self.quality!r}")
        if self.bpp is not None and not (_is_real(self.bpp) and 0 < self.bpp < 64):
            raise ValueError(f"target bpp must be in (0, 64), got {self.bpp!r}")
        if self.size is not None and not (_is_int(self.size) and self.size > 0):
            raise ValueError(f"target size must be a positive number of bytes, got {self.size!r}")
        if self.psnr is not None and not (_is_real(self.psnr) and 0 < self.psnr <= MAX_PSNR):
            raise ValueError(f"target PSNR must be a number of dB above 0 and at most {MAX_PSNR:g}, "
                             f"got {self.psnr!r}")
        if sum(x is not None for x in (self.quality, self.bpp, self.size, self.psnr)) > 1:
            raise ValueError("give one of quality, bpp, size and psnr")
        if self.model is not None and not (isinstance(self.model, str) and NAME_RE.match(self.model)):
            raise ValueError(f"invalid model name {self.model!r}")
        for name, kind, ok in (("bits", "an integer", _is_int), ("norm", "an integer", _is_int),
                               ("threshold", "a number", lambda v: v is None or _is_real(v)),
                               ("sigma", "a number", _is_real)):
            if not ok(getattr(self, name)):
                raise ValueError(f"mask {name} must be {kind}, got {getattr(self, name)!r}")
        MaskParams(bits=self.bits, threshold=50.0 if self.threshold is None else self.threshold,
                   norm=self.norm, sigma=self.sigma).validate()
        if self.lr_step is not None and not (_is_int(self.lr_step) and 1 <= self.lr_step <= MAX_LR_STEP):
            raise ValueError(f"LR step must be an integer from 1 to {MAX_LR_STEP}, got {self.lr_step!r}")
        if self.lr_space is not None and self.lr_space not in LR_SPACES:
            raise ValueError(f"LR space must be one of {', '.join(LR_SPACES)}, got {self.lr_space!r}")
        if self.lr_codec is not None and self.lr_codec not in LR_CODECS:
            raise ValueError(f"LR codec must be one of {', '.join(LR_CODECS)}, got {self.lr_codec!r}")
        if self.lr_quality is not None and not (_is_int(self.lr_quality) and 0 <= self.lr_quality <= 100):
            raise ValueError(f"LR quality must be an integer from 0 to 100, got {self.lr_quality!r}")
        if self.lr_speed is not None and not (_is_int(self.lr_speed) and self.lr_speed in LR_SPEEDS):
            raise ValueError(f"AVIF speed must be an integer from 0 to 10, got {self.lr_speed!r}")
        if (self.lr_codec == "avif" or self.is_target) and (self.lr_step not in (None, 1)
                                                             or self.lr_space not in (None, "rgb")):
            what = "a bpp or size target codes the LR with AVIF, which" if self.is_target else "an AVIF LR"
            raise ValueError(f"{what} has no LR step or colour space of its own (step 1, rgb)")
        if not (_is_int(self.seed) and 0 <= self.seed < 2 ** 32):
            raise ValueError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if self.temperature is not None and not (_is_real(self.temperature)
                                                 and 0 <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(f"temperature must be in [0, {MAX_TEMPERATURE}], got {self.temperature!r}")
        if not (isinstance(self.metadata, str) and (self.metadata in ("all", "none") or (
                self.metadata and set(self.metadata.split(",")) <= set(METADATA_KEYS)))):
            raise ValueError(f"metadata must be all, none, or a comma list of {', '.join(METADATA_KEYS)}, "
                             f"got {self.metadata!r}")
        if not (isinstance(self.refine, int) and self.refine >= 0):
            raise ValueError(f"refine must be True, False or a number of steps >= 0, got {self.refine!r}")
        if self.scale == 1 and self.lr_codec == "lossless":
            raise ValueError("x1 stores the photo with AVIF; for a lossless LR choose scale 2, 4, 8 or 16")
        # a target searches the LR's AVIF quality: bpp and size per scale, psnr through -q
        target = "a bpp or size target" if self.is_target else "a PSNR target" if self.psnr is not None else None
        if target:
            if self.refine:
                raise ValueError(f"refinement with {target} is not supported; use -q")
            if self.lr_codec == "lossless":
                raise ValueError(f"{target} needs the AVIF LR (the lossless LR has no quality)")
            if self.lr_quality is not None:
                raise ValueError(f"{target} chooses the LR quality itself; leave out the LR quality")
            if self.psnr is not None and (self.lr_step is not None or self.lr_space is not None):
                # -q's own settings would take any step or space as the lossless LR
                raise ValueError("a PSNR target needs the AVIF LR, which has no LR step or colour space")
        for name, low in (("refine_eps", 0), ("refine_alpha", 0), ("refine_lambda", None)):
            v = getattr(self, name)   # low: exclusive lower bound (None: >= 0)
            if v is not None and not (_is_real(v) and math.isfinite(v) and (v > 0 if low == 0 else v >= 0)):
                bound = "positive" if low == 0 else "0 or more"
                raise ValueError(f"{name} must be a finite number, {bound}, got {v!r}")
        if self.refine_method not in REFINE_METHODS:
            raise ValueError(f"unknown refine method {self.refine_method!r}; "
                             f"choose from {', '.join(REFINE_METHODS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose {', '.join(DEVICES)}")
        return self

    def target_scales(self) -> tuple:
        """The scales a bpp or size target searches: the one asked for, else the
        named model's, else each whose default model codes the AVIF LR.
        ValueError where the scale or model keeps a lossless LR, which has no
        quality to search (the manifest says; no weights are loaded)."""
        from . import weights
        from .errors import WeightsError
        self.validate()
        scale = self.scale
        if self.model:
            card = weights.card(self.model)
            if card.defaults.lr_codec != "avif":
                raise ValueError(f"a bpp or size target needs a model trained for the AVIF LR; "
                                 f"{card.name} keeps a lossless one")
            if scale is not None and scale != card.scale:
                raise ValueError(f"model {card.name!r} is for x{card.scale}, not x{scale}")
            return (card.scale,)

        def avif(s):
            try:
                return weights.trained_for(s, "avif")
            except WeightsError:   # no model for that scale installed
                return False
        if scale is not None and not avif(scale):
            weights.default_model(scale)   # none installed: that error, not the one below
            raise ValueError(f"a bpp or size target works at scales "
                             f"{', '.join(str(s) for s in SCALES if avif(s))}; "
                             f"x{scale} keeps its model's lossless thumbnail, which has no quality")
        return (scale,) if scale is not None else tuple(s for s in SCALES if avif(s))

    @property
    def is_target(self) -> bool:
        """A bpp or size target: the scale and LR quality are searched per image (codec.py)."""
        return self.bpp is not None or self.size is not None

    def resolved(self) -> "EncodeSettings":
        """Validated, with every None that a model or the quality decides
        filled in: the scale, model, LR codec and quality, mask threshold,
        LR step and space, Z temperature.  Not for targets without a scale (codec.py)."""
        from . import weights
        self.validate()
        st = self
        named = weights.card(st.model) if st.model else None
        # The model's own way of storing the LR; an LR step or space only exists
        # for the lossless LR, so asking for one selects it; a forced scale with
        # no flow trained for AVIF keeps the lossless LR its flow was made for.
        codec = st.lr_codec or (
            named.defaults.lr_codec if named else
            "lossless" if st.lr_step or st.lr_space else
            "avif" if st.scale is None or weights.trained_for(st.scale, "avif") else "lossless")
        if st.scale == 1 and codec == "lossless":
            raise ValueError("x1 stores the photo with AVIF, which has no LR step or colour space")
        if st.psnr is not None and codec != "avif":
            raise ValueError(f"a PSNR target needs the AVIF LR; "
                             f"{named.name if named else f'x{st.scale}'} keeps a lossless one, which has no quality")
        if codec == "avif" and (st.lr_step not in (None, 1) or st.lr_space not in (None, "rgb")):
            who = f"model {named.name} codes the LR with AVIF, which" if named else "an AVIF LR"
            raise ValueError(f"{who} has no LR step or colour space of its own (step 1, rgb)")
        if st.scale is not None:    # a named model of another scale is refused below
            scale = st.scale
        elif named:
            scale = named.scale
        elif codec == "lossless":
            scale = LOSSLESS_SCALE
        elif st.is_target:
            raise ValueError("a bpp or size target without a scale is resolved per image")
        else:
            scale = ladder(DEFAULT_QUALITY if st.quality is None else st.quality)[0]
        lossy = codec == "avif"
        if not lossy and st.lr_speed is not None:
            raise ValueError("the AVIF speed is for an AVIF LR; this one is lossless")
        if lossy and st.lr_quality is None:
            q = DEFAULT_QUALITY if st.quality is None else st.quality
            lq = ladder(q)[1] if st.scale is None and st.model is None else q
        else:
            lq = st.lr_quality if lossy else None
        # the default model may depend on the LR quality (weights.default_model)
        card = named or weights.card(weights.default_model(scale, codec, lq))
        if card.scale != scale:
            raise ValueError(f"model {card.name!r} is for x{card.scale}, not x{scale}")
        d = card.defaults
        step, space = lr_storage(codec, d.lr_step if st.lr_step is None else st.lr_step,
                                 d.lr_space if st.lr_space is None else st.lr_space)
        return replace(st, scale=scale, model=card.name, lr_codec=codec, lr_quality=lq,
                       threshold=d.threshold if st.threshold is None else float(st.threshold),
                       temperature=d.temperature if st.temperature is None else float(st.temperature),
                       lr_step=step, lr_space=space)

    def header(self, width: int, height: int, mode: str, weights_hash: bytes):
        """The container header of a file encoded with these (resolved) settings;
        an x1 file has no mask, so its mask fields are the defaults, not stored."""
        from .container import MASK_DEFAULTS, Header
        bits, norm, threshold, sigma = (MASK_DEFAULTS if self.scale == 1 else
                                        (self.bits, self.norm, self.threshold, self.sigma))
        return Header(width=width, height=height, mode=mode, scale=self.scale,
                      mask_bits=bits, mask_norm=norm,
                      mask_threshold=float(threshold), mask_sigma=float(sigma),
                      z_seed=self.seed, z_temperature=float(self.temperature),
                      weights_hash=weights_hash, model=self.model, lr_step=self.lr_step,
                      lr_space=self.lr_space, lr_codec=self.lr_codec)

    @classmethod
    def of_header(cls, h) -> "EncodeSettings":
        """The settings a file was written with (refinement and the AVIF
        quality and speed are encoder choices, not recorded, as JPEG's quality
        is not)."""
        return cls(scale=h.scale, model=h.model, bits=h.mask_bits, threshold=h.mask_threshold,
                   norm=h.mask_norm, sigma=h.mask_sigma, lr_step=h.lr_step, lr_space=h.lr_space,
                   lr_codec=h.lr_codec, seed=h.z_seed, temperature=h.z_temperature)

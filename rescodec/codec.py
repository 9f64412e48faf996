"""Encode and decode: the pipeline between pixels and .rsc bytes.

encode: pad to a multiple of s (symmetric reflection) -> flow forward ->
        Y rounded to the LR step's grid, its codes stored losslessly ->
        boundary mask of the padded image at LR resolution, entropy-coded ->
        container
decode: container -> Y from the codes, B = mask values, Z ~ N(0, t^2) from
        the stored seed -> flow inverse -> crop, clamp, round
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import container, images, lossless, lr_quant, mask_coding, refine as hcd, tiling, weights
from .container import Header
from .errors import CorruptError
from .mask import MaskParams, level_values
from .tiling import to_tensor

# Z temperature of new files.  0 gives the highest PSNR, and the shipped
# models, trained at Z = 0, collapse at any t > 0 (BENCHMARKS.md "Z temperature").
DEFAULT_TEMPERATURE = 0.0
DEFAULT_SEED = 0


def _pad(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ph, pw = -h % scale, -w % scale
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="symmetric") if ph or pw else rgb


def sample_z(seed: int, temperature: float, shape) -> torch.Tensor:
    """Z ~ N(0, t^2): numpy's PCG64 stream, so it is the same on every platform."""
    if temperature == 0:
        return torch.zeros(shape)
    z = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return torch.from_numpy(z * np.float32(temperature))


def z_tiles(seed: int, temperature: float, channels: int, lr_shape):
    """-> z_tile(y0, y1, x0, x1): the decoder's Z over any LR window."""
    if temperature == 0:
        def z_tile(y0, y1, x0, x1):
            return torch.zeros(1, channels, y1 - y0, x1 - x0)
    else:   # one stream for the whole image, so tiling cannot change the draw
        z = sample_z(seed, temperature, (1, channels) + tuple(lr_shape))

        def z_tile(y0, y1, x0, x1):
            return z[:, :, y0:y1, x0:x1]
    return z_tile


@dataclass
class Encoded:
    data: bytes
    header: Header
    sizes: dict
    notices: list
    seconds: float


def encode_ex(image, scale: int = 16, *, bits: int = 1, threshold: float | None = None, norm: int = 2,
              sigma: float = 1.0, temperature: float = DEFAULT_TEMPERATURE,
              seed: int = DEFAULT_SEED, model: str | None = None, refine: int = 0,
              device: str = "auto", progress=None, refine_method: str = hcd.DEFAULT_METHOD,
              refine_eps: float | None = None, refine_alpha: float | None = None,
              refine_lambda: float | None = None, lr_step: int | None = None,
              lr_space: str | None = None) -> Encoded:
    """encode() plus the header, section sizes, notices and time."""
    t0 = time.perf_counter()
    name = model or weights.default_model(scale)
    if threshold is None:
        threshold = weights.mask_threshold_of(name)
    params = MaskParams(bits=bits, threshold=float(threshold), norm=norm, sigma=float(sigma))
    params.validate()
    if not (0 <= temperature <= container.MAX_TEMPERATURE):
        raise ValueError(f"temperature must be in [0, {container.MAX_TEMPERATURE}], got {temperature}")
    if not (0 <= seed < 2 ** 32):
        raise ValueError(f"seed must be in [0, 2^32), got {seed}")
    step = weights.lr_step_of(name) if lr_step is None else lr_step
    lr_quant.check_lr_step(step)
    space = weights.lr_space_of(name) if lr_space is None else lr_space
    lr_quant.check_lr_space(space)
    net = weights.load_model(name)
    if net.config.scale != scale:
        raise ValueError(f"model {name!r} is for x{net.config.scale}, not x{scale}")
    pic = images.load(image)
    h, w = pic.rgb.shape[:2]
    padded = _pad(pic.rgb, scale)
    if refine < 0:
        raise ValueError(f"refine must be >= 0, got {refine}")
    if refine_method not in hcd.METHODS:       # checked before any work
        raise ValueError(f"unknown refine method {refine_method!r}; "
                         f"choose from {', '.join(hcd.METHODS)}")
    y = tiling.forward_y(net, padded)
    levels = tiling.mask_levels(padded, scale, params)
    notices = list(pic.notices)
    trained_t = weights.entry(name).get("train_config", {}).get("z_temperature", 0.0)
    if temperature > 0 and trained_t == 0:
        notices.append(f"model {name} was trained for Z temperature 0; t = {temperature} will "
                       "decode far worse (BENCHMARKS.md, 'Z temperature')")
    if refine:
        # against the exact decoder: same B, same Z, same rounding
        b = torch.from_numpy(level_values(levels, bits) * net.config.b_scale)[None, None]
        z_tile = z_tiles(seed, float(temperature), net.latent_channels - 4, levels.shape)
        eps, alpha = hcd.settings_for(scale)
        eps, alpha = refine_eps or eps, refine_alpha or alpha
        if padded.shape[0] * padded.shape[1] <= hcd.WHOLE_MAX_PIXELS:
            y, before, after = hcd.refine_lr(
                net, to_tensor(padded), b, z_tile(0, levels.shape[0], 0, levels.shape[1]),
                refine, eps=eps, alpha=alpha, device=device, progress=progress,
                method=refine_method, lam=refine_lambda, step=step, space=space)
            notices.append(f"refined: {before:.2f} -> {after:.2f} dB (padded image)")
        else:   # bounded memory: tile by tile
            y, before, after = hcd.refine_tiled(
                net, padded, lr_quant.lr_grid(y, step, space), b, z_tile, refine,
                eps=eps, alpha=alpha, device=device, progress=progress,
                method=refine_method, lam=refine_lambda, step=step, space=space)
            notices.append(f"refined in tiles: {before:.2f} -> {after:.2f} dB "
                           "(padded image, estimated tile by tile)")
    codes = lr_quant.lr_codes(y, step, space)
    header = Header(width=w, height=h, mode=pic.mode, scale=scale, mask_bits=bits, mask_norm=norm,
                    mask_threshold=params.threshold, mask_sigma=params.sigma, z_seed=seed,
                    z_temperature=float(temperature), weights_hash=weights.hash_prefix(name),
                    model=name, lr_step=step, lr_space=space)
    alpha = lossless.encode(pic.alpha) if pic.alpha is not None else None
    data = container.pack(header, lossless.encode(codes), mask_coding.encode(levels, bits), alpha)
    sizes = container.unpack(data, max_pixels=1 << 62).sizes   # also re-checks what we wrote
    return Encoded(data, header, sizes, notices, time.perf_counter() - t0)


def encode(image, scale: int = 16, **options) -> bytes:
    """A path, PIL image or numpy array -> .rsc bytes.

    Options: bits (1-3), threshold (T; None: the model's own, README "Mask
    threshold"), norm (1 or 2), sigma,
    temperature (Z scale at decode), seed, model (a registered name),
    refine (iterations, 0 = off), refine_method ("rd", the default, or "hcd";
    see refine.py), device (auto, cpu, cuda) and lr_step (the LR quantiser's
    step, 1-16; None: the model's own, README "LR step") and lr_space (the
    LR codes' colour space, "rgb" or "ycc"; None: the model's own, README
    "LR colour space")."""
    return encode_ex(image, scale, **options).data


def decode_array(data: bytes, max_pixels: int = container.MAX_PIXELS):
    """.rsc bytes -> (rgb uint8 HxWx3, alpha or None, header)."""
    f = container.unpack(bytes(data), max_pixels=max_pixels)
    hd = f.header
    net = weights.load_model(hd.model, expect_hash=hd.weights_hash)
    if net.config.scale != hd.scale:
        raise CorruptError(f"corrupt .rsc file (scale x{hd.scale} but model {hd.model!r} "
                           f"is x{net.config.scale})")
    lh, lw = hd.lr_size
    codes = lossless.decode(f.sections[container.SECTION_LR], (lh, lw, 3), "LR")
    lr = lr_quant.lr_from_codes(codes, hd.lr_step, hd.lr_space)
    levels = mask_coding.decode(f.sections[container.SECTION_MASK], (lh, lw), hd.mask_bits)
    b = level_values(levels, hd.mask_bits) * net.config.b_scale
    z_tile = z_tiles(hd.z_seed, hd.z_temperature, net.latent_channels - 4, (lh, lw))
    rgb = tiling.inverse_rgb(net, lr, b, z_tile)[: hd.height, : hd.width]
    alpha = None
    if hd.has_alpha:
        alpha = lossless.decode(f.sections[container.SECTION_ALPHA], (hd.height, hd.width), "alpha")
    return np.ascontiguousarray(rgb), alpha, hd


def decode(data: bytes, max_pixels: int = container.MAX_PIXELS):
    """.rsc bytes -> PIL.Image in the original mode (L, LA, RGB or RGBA)."""
    rgb, alpha, hd = decode_array(data, max_pixels)
    return images.to_pil(rgb, alpha, hd.mode)


def info(data: bytes, max_pixels: int = container.MAX_PIXELS) -> dict:
    """Header fields, section sizes and bpp of .rsc bytes (no decoding)."""
    f = container.unpack(bytes(data), max_pixels=max_pixels)
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
           "lr_codec": lossless.CODEC_NAMES.get(f.sections[container.SECTION_LR][0], "?"),
           "mask_coder": mask_coding.CODER_NAMES.get(f.sections[container.SECTION_MASK][0], "?"),
           "bytes": len(data), "bpp": 8 * len(data) / pixels,
           "sections": {k: {"bytes": v, "share": v / len(data)} for k, v in f.sizes.items()}}
    return out

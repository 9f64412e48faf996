"""Reading .rsc files: the container's sections into the small picture,
the latent and the mask, then the flow's inverse and the restoration head
into the picture (x1: the AVIF decode and the head at the file's gain per
block).  Decoding is bit-exact at any thread count (tiling.py)."""
from __future__ import annotations

import functools
import io
import os
from dataclasses import replace
from typing import BinaryIO, Union

import numpy as np

from . import av1_item, container, head_gain, lossless, lossy_lr, lr_quant, mask_coding, tiling, weights
from .container import Header
from .errors import CorruptError, RscError
from .latent import DecoderInput
from .settings import EncodeSettings


OWN_FILES = 1 << 62   # the pixel limit for reading the encoder's own files: any size its caller allowed


# .rsc data as the functions below take it: bytes (or any buffer), a path, or a binary file
Source = Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO]


def names_its_path(fn):
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


@names_its_path
def decode_array(data: Source, max_pixels: int = container.MAX_PIXELS, net=None,
                 temperature: float | None = None, seed: int | None = None, fast: bool = False):
    """.rsc bytes -> (rgb uint8 HxWx3, alpha or None, header).  `net`: the
    network that encode_ex() was given, for files of an unregistered one.
    `temperature`, `seed`: draw Z with these instead of the file's own.
    `fast`: skip the restoration head (`decode`)."""
    return decode_rgb(unpack(data, max_pixels=max_pixels), net, temperature, seed, fast)


def _redraw(hd: Header, temperature, seed) -> Header:
    """The header with the caller's Z temperature and seed in place of the file's."""
    if temperature is None and seed is None:
        return hd
    t = hd.z_temperature if temperature is None else temperature
    s = hd.z_seed if seed is None else seed
    st = EncodeSettings(temperature=t, seed=s).validate()   # as the encoder takes them: no "0.5" or True
    return replace(hd, z_temperature=float(st.temperature), z_seed=st.seed)


def decode_rgb(f: container.RscFile, net=None, temperature=None, seed=None, fast=False):
    if not isinstance(fast, bool):   # fast="no" would be true
        raise ValueError(f"fast must be True or False, got {fast!r}")
    hd, net, lr, levels, alpha = decode_sections(f, net, temperature, seed)
    if hd.scale == 1:   # no flow: the AVIF decode, restored by the head at the file's gains
        rgb = lr if fast else _restore_x1(net, lr, levels)
    else:
        dec_in = DecoderInput(net, levels, hd.mask_bits, hd.z_seed, hd.z_temperature)
        rgb = tiling.inverse_rgb(net, lr, dec_in, restore=not fast)[: hd.height, : hd.width]
    return np.ascontiguousarray(rgb), alpha, hd


def decode_sections(f: container.RscFile, net=None, temperature=None, seed=None) -> tuple:
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

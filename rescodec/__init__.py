"""rescodec: an image codec built on an invertible rescaling flow.

    import rescodec
    data = rescodec.encode("photo.png", quality=75)   # -> .rsc bytes
    img = rescodec.decode(data)                      # -> PIL.Image
"""
from . import pillow_plugin  # noqa: F401  (registers the .rsc format with Pillow)
from .errors import (CorruptError, ImageInputError, LimitError, NotRscError, RscError,
                     TruncatedError, UnsupportedVersionError, WeightsError)

__version__ = "0.28.0"


def __getattr__(name):
    """encode, decode, info: the codec (and torch) load on first use, so that
    `rescodec --help` and the Pillow plugin's registration stay light."""
    if name in ("encode", "decode", "info"):
        from . import codec
        return getattr(codec, name)
    raise AttributeError(f"module 'rescodec' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"encode", "decode", "info"})


__all__ = ["encode", "decode", "info", "RscError", "NotRscError", "UnsupportedVersionError",
           "TruncatedError", "CorruptError", "LimitError", "WeightsError", "ImageInputError"]

"""rescodec: an image codec built on an invertible rescaling flow.

    import rescodec
    data = rescodec.encode("photo.png", quality=75)   # -> .rsc bytes
    img = rescodec.decode(data)                      # -> PIL.Image
"""
from . import pillow_plugin  # noqa: F401  (registers the .rsc format with Pillow)
from .codec import decode, encode, info
from .errors import (CorruptError, ImageInputError, LimitError, NotRscError, RscError,
                     TruncatedError, UnsupportedVersionError, WeightsError)

__version__ = "0.2.0"
__all__ = ["encode", "decode", "info", "RscError", "NotRscError", "UnsupportedVersionError",
           "TruncatedError", "CorruptError", "LimitError", "WeightsError", "ImageInputError"]

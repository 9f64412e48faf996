"""rescodec: an image codec built on an invertible rescaling flow.

    import rescodec
    data = rescodec.encode("photo.png", quality=75)   # -> .rsc bytes
    img = rescodec.decode(data)                      # -> PIL.Image
"""
import os as _os
import signal as _signal
import sys as _sys


def _interrupted_early(signum, frame):
    """Ctrl-C while the command loads, before cli.run() has its handlers: one
    line, as later, not a traceback out of an import."""
    _os.write(2, b"rescodec: error: interrupted\n")
    _os._exit(130)


def _is_the_command() -> bool:
    """The rescodec console script, or python -m rescodec / rescodec.cli (argv[0]
    is "-m" while the package loads for -m); a library import, or python -m
    rescodec.training, leaves the program's signals alone."""
    if _sys.argv[:1] == ["-m"]:
        argv = getattr(_sys, "orig_argv", [])
        return "-m" in argv and argv[argv.index("-m") + 1:][:1] in (["rescodec"], ["rescodec.cli"])
    return _os.path.basename(_sys.argv[0] if _sys.argv else "") == "rescodec"


if _is_the_command() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_early)   # cli.run() puts its own in place

from . import pillow_plugin  # noqa: E402,F401  (registers the .rsc format with Pillow)
from .errors import (CorruptError, ImageInputError, LimitError, NotRscError, RscError,
                     TruncatedError, UnsupportedVersionError, WeightsError)

__version__ = "0.34.0"


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

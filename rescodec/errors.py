"""One error family for bad data: every problem with an input file or a .rsc
stream is an `RscError` (a ValueError), so callers and the CLI catch one type."""


class RscError(ValueError):
    """Base class: the data given to rescodec cannot be used."""


class NotRscError(RscError):
    """The bytes do not start with the .rsc magic."""


class UnsupportedVersionError(RscError):
    """A .rsc file of a format version this rescodec cannot read."""


class TruncatedError(RscError):
    """The file ends before a field or section it declares."""


class CorruptError(RscError):
    """A CRC mismatch or a field with a value the format does not allow."""


class LimitError(RscError):
    """Dimensions or sizes beyond the documented limits (decompression-bomb guard)."""


class WeightsError(RscError):
    """The model a file needs is not installed, or its weights fail the hash check."""


class ImageInputError(RscError):
    """An input that is not an image rescodec can read."""

"""The photos of a folder, as training, evaluation and `rescodec bench` read
them: the common image files, found recursively, in a stable order."""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folders) -> list[Path]:
    """Each folder's image files (IMAGE_SUFFIXES, any case), sorted, folder by folder."""
    out = []
    for d in folders:
        out += sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return out


def load_rgb(path):
    """An image file -> its 8-bit RGB pixels (h, w, 3), as stored (no EXIF turn);
    ImageInputError naming the file where it cannot be read (in a folder of
    hundreds, "image file is truncated" alone does not say which)."""
    import numpy as np       # here: the command line imports this module and stays quick
    from PIL import Image
    from .errors import ImageInputError
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        said = str(e)
        raise ImageInputError(said if str(path) in said else f"{path}: {said}") from e

"""Pillow plugin, in the shape of Pillow's own QoiImagePlugin: importing
rescodec registers it, so

    Image.open("photo.rsc")            # decodes with the installed weights; the
                                       # stored EXIF, ICC profile and XMP are in .info
    img.save("x.rsc", quality=80)      # encodes; any rescodec.encode option works,
                                       # and any other keyword is a ValueError
    img.save("x.rsc", exif=b"")        # exif=, icc_profile=, xmp= as for Pillow's
                                       # own formats (empty: leave out); else .info's
    img.thumbnail((128, 128))          # from the small picture inside, where it is
                                       # big enough (draft, as JPEG's): no network run
    Image.open("damaged.rsc")          # an OSError, as Pillow's formats raise, that
                                       # is also rescodec's error (CorruptError, ...)

and Image.open on other files falls through to the other formats (the
magic is checked first)."""
from __future__ import annotations

from PIL import Image, ImageFile

from . import container, weights
from .errors import CorruptError, LimitError, TruncatedError, UnsupportedVersionError, WeightsError
from .settings import EncodeSettings

# what Pillow itself puts in encoderinfo, not rescodec options
_PILLOW_KEYS = {"format", "append_images", "save_all"}
_METADATA_KEYS = tuple(container.METADATA_TAGS.values())   # Pillow's names: exif, icc_profile, xmp
_THUMB = "thumb"   # the tile's decoder argument after draft(): the small picture, not the network's decode


def _accept(prefix: bytes) -> bool:
    return container.looks_like_rsc(prefix)


# rescodec's errors as Pillow's formats raise theirs, OSErrors: Pillow's users
# catch OSError (UnidentifiedImageError is one), and ImageFile.Parser
# (Django's get_image_dimensions feeds it 1 KB at a time) takes an OSError at
# open for "feed more data".  Each is still its rescodec type, an RscError.
class TruncatedStreamError(TruncatedError, OSError):
    """A truncated .rsc file."""


class CorruptStreamError(CorruptError, OSError):
    """A damaged .rsc file."""


class UnsupportedStreamError(UnsupportedVersionError, OSError):
    """An .rsc file of a format version this rescodec cannot read."""


class LimitStreamError(LimitError, OSError):
    """An .rsc file beyond the format's limits."""


class MissingModelError(WeightsError, OSError):
    """The model an .rsc file needs is not installed, or fails its hash check."""


_STREAM_ERRORS = {TruncatedError: TruncatedStreamError, CorruptError: CorruptStreamError,
                  UnsupportedVersionError: UnsupportedStreamError, LimitError: LimitStreamError,
                  WeightsError: MissingModelError}


def _pillows(e: Exception) -> Exception:
    """A rescodec error as the OSError of its kind."""
    return next(kind(str(e)) for base, kind in _STREAM_ERRORS.items() if isinstance(e, base))


def _limit() -> int:
    """Pillow's decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS, past
    which Image.open refuses any format; None: none) in place of rescodec's."""
    most = Image.MAX_IMAGE_PIXELS
    return container.MAX_SIDE ** 2 if most is None else max(1, int(2 * most))


class RscImageFile(ImageFile.ImageFile):
    format = "RSC"
    format_description = "rescodec invertible-rescaling image"

    def _open(self) -> None:
        head = self.fp.read(container.HEAD_BYTES)
        if not _accept(head):
            raise SyntaxError("not an .rsc file")
        self.fp.seek(0)
        try:
            size = container.declared_size(head)   # Pillow's bomb check, before the rest is read
            if size and size[0] * size[1] > _limit():
                raise Image.DecompressionBombError(
                    f"Image size ({size[0] * size[1]} pixels) exceeds limit of {_limit()} pixels, "
                    f"could be decompression bomb DOS attack.")
            # bounded: no more is read than a file of that size takes
            f = container.unpack(container.read(self.fp, _limit()), _limit(), names=weights.name_for_hash)
        except tuple(_STREAM_ERRORS) as e:
            raise _pillows(e) from None
        header = f.header
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["scale"] = header.scale
        self.info["model"] = header.model
        self.info["lr_step"] = header.lr_step
        self.info["lr_space"] = header.lr_space
        self.info["z_temperature"] = round(header.z_temperature, 4)   # the texture drawn at decode (float32)
        self.info["z_seed"] = header.z_seed
        if header.has_metadata:   # exif, icc_profile, xmp: the keys Pillow's formats use
            self.info.update(container.unpack_metadata(f.sections[container.SECTION_METADATA]))
        self.tile = [ImageFile._Tile("rsc", (0, 0) + self.size, 0, None)]
        self._scale, self._lr_size = header.scale, header.lr_size[::-1]   # (w, h)
        # a thumbnail only where the flow was trained for an AVIF small
        # picture: -s 8's is blurred (11.4 levels from the photo's box
        # downscale against x2's 4.7, `benchmark thumbnails`), so -s 8 and
        # -s 16 files decode in full
        self._thumbnail = header.lr_codec == "avif"

    def load_read(self, read_bytes: int) -> bytes:
        """Never called by load(), whose decoder reads the file itself; its
        presence (as PNG's) tells ImageFile.Parser to decode the whole file
        at close() rather than feed chunks to a decoder that cannot take them."""
        return self.fp.read(read_bytes)

    def draft(self, mode, size):
        """Pillow's reduced decode, as JPEG's, which Image.thumbnail() asks for:
        where `size` fits within the small picture in the file (x2 and up, no
        alpha, an AVIF small picture: not -s 8 or -s 16), the image becomes
        that picture (codec.thumbnail_image), decoded without the network.
        -> (mode, the original's box in its pixels) or None."""
        (w, h), (lw, lh) = self.size, self._lr_size
        if (size is None or self._scale == 1 or not self._thumbnail or self.mode not in ("RGB", "L") or not self.tile
                or self.tile[0][3] == _THUMB
                or lw < size[0] or lh < size[1]):
            return None
        self._size = (lw, lh)
        self.tile = [ImageFile._Tile("rsc", (0, 0, lw, lh), 0, _THUMB)]
        return self.mode, (0, 0, w / self._scale, h / self._scale)


class RscDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer):
        from . import codec, images   # torch loads on the first decode, not on import
        assert self.fd is not None
        self.fd.seek(0)
        try:
            data = container.read(self.fd, _limit())
            if self.args == (_THUMB,):
                im = codec.thumbnail_image(data, _limit())[0]
            else:
                rgb, alpha, header = codec.decode_array(data, _limit())
                im = images.to_pil(rgb, alpha, header.mode)
        except tuple(_STREAM_ERRORS) as e:
            raise _pillows(e) from None
        self.set_as_raw(im.tobytes(), im.mode)
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    from . import codec
    options = {k: v for k, v in im.encoderinfo.items() if k not in _PILLOW_KEYS}
    given = {k: options.pop(k) for k in _METADATA_KEYS if k in options}
    if given:   # save(exif=...) overrides .info; images.load reads .info
        im = im.copy()
        for k, v in given.items():
            v = v.tobytes() if isinstance(v, Image.Exif) else v.encode() if isinstance(v, str) else v
            if v and not isinstance(v, (bytes, bytearray, memoryview)):   # as Pillow's own savers
                raise TypeError(f"{k} must be bytes, got {type(v).__name__}")
            if v:
                im.info[k] = bytes(v)
            else:
                im.info.pop(k, None)
    EncodeSettings.check_names(options, also=("speed",))
    speed = options.pop("speed", None)   # Pillow's AVIF saver's name for it; None: not given
    if speed is not None:
        if options.get("lr_speed") is not None:
            raise ValueError("give speed or lr_speed, not both")
        options["lr_speed"] = speed
    fp.write(codec.encode(im, options.pop("scale", None), **options))   # unknown or wrong: ValueError


Image.register_open(RscImageFile.format, RscImageFile, _accept)
Image.register_save(RscImageFile.format, _save)
Image.register_decoder("rsc", RscDecoder)
Image.register_extension(RscImageFile.format, ".rsc")

"""The `rescodec` command line: encode, decode, thumb, info, models, compare,
bench, export and train.

Every file gets one line (stdout, or stderr when stdout carries the data of
`-o -`); every problem one line on stderr (`rescodec: error: ...`) and a
non-zero exit.  Outputs are written to a temporary file and linked into place,
so they are never half-written and an existing file is never replaced without
--force.

Only light modules are imported here: codec, weights and refine pull in torch,
so each command imports them when it runs, and `rescodec --help` stays quick.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import signal
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import click

from . import __version__, container, settings    # the format and constants; they import no torch
from .container import MAX_PIXELS
from .errors import RscError, WeightsError, debugging, internal_error

SCALE_CHOICES = click.Choice([str(s) for s in settings.SCALES])
# the common image extensions (as training.train.IMAGE_SUFFIXES, not imported from
# there: that module pulls torch and the training extras); a folder given to
# `encode` is searched for every extension Pillow opens (_readable_extensions)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# output extension -> Pillow format and save options; quality 95 keeps JPEG
# artefacts below the codec's own, and WebP is written lossless for the same reason
IMAGE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}),
                 ".jpeg": ("JPEG", {"quality": 95}), ".webp": ("WEBP", {"lossless": True}),
                 ".tif": ("TIFF", {}), ".tiff": ("TIFF", {}), ".bmp": ("BMP", {})}
THUMB_FORMATS = {**IMAGE_FORMATS, ".avif": ("AVIF", {})}   # .avif: the stored AVIF itself (thumb)
NO_ALPHA = {"JPEG", "BMP"}
TIFF_XMP = 700                        # the TIFF tag that holds XMP
JPEG_MAX_XMP = 65504                  # one APP1 segment, less its XMP namespace header
JPEG_MAX_EXIF = 65533                 # one APP1 segment, "Exif\0\0" included (Pillow's own limit)
JPEG_MAX_ICC = 255 * 65519            # APP2 segments of 65519 bytes, counted in a byte
STDIO = "-"                          # an input of - reads stdin, -o - writes stdout


def _shown(text: str) -> str:
    """Text for the terminal: a file name that is not UTF-8 (bad\\xff.png,
    which Python keeps as a lone surrogate) with its odd bytes written
    \\xff, as printing it would otherwise fail."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # a lone surrogate that no file name gives
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _echo(text: str, err: bool = False) -> None:
    click.echo(_shown(text), err=err)


def _print_out(text: str, err: bool = False) -> None:
    """Text of any length (a batch's --json) to stdout in full, or to stderr:
    a pipe whose reader leaves during a large write takes part of it without
    an error, and click.echo dropped the rest and went on to exit 0."""
    if err:
        click.echo(text, err=True)
        return
    sys.stdout.flush()
    _write_stdout((text + "\n").encode())


def _fail(msg: str) -> None:
    _echo(f"rescodec: error: {msg}", err=True)


def _note(name, msg: str) -> None:
    _echo(f"rescodec: note: {name}: {msg}", err=True)


def _problem(name, e: Exception) -> str:
    """One line for what went wrong with the input `name`: an OSError as the
    system names it ("missing.rsc: no such file or directory"), anything
    else with the name in front unless its message already has it."""
    name = str(name)
    if isinstance(e, OSError) and e.strerror:
        where = e.filename if e.filename not in (None, "") else name
        return f"{where}: {e.strerror[0].lower()}{e.strerror[1:]}"
    return str(e) if name in str(e) else f"{name}: {e}"


def _usage(msg: str) -> None:
    """A mistake in the command line: one line, exit 2 (as click's own), nothing written."""
    _fail(msg)
    sys.exit(2)


def _check_model_option(model: str | None) -> None:
    """--model naming no installed model is a mistake in the command line."""
    if model is None:   # no manifest to read
        return
    from . import weights
    try:
        installed = weights.manifest()
    except (RscError, OSError):   # a broken install: the encode says why, per its own error
        return
    if model not in installed:
        _usage(f"--model {model!r} is not installed; `rescodec models` lists those that are")


def _name(path: Path | None, stream: str) -> str:
    return stream if path is None else str(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(path: Path) -> int | None:
    """st_mode of what `path` names; None where nothing is there or the name
    cannot be looked up (too long): the read or write of that name then says
    why, as one line."""
    try:
        return path.stat().st_mode
    except OSError:
        return None


def _is_stream(path: Path) -> bool:
    """A device or a pipe (-o /dev/null): written through, as it holds no file to lose."""
    mode = _mode(path)
    return mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))


def _stream_name(path: Path) -> bool:
    """Whether `path` is a pipe or device, or a name in /dev itself or under
    /proc (/dev/stdin, <(cmd)'s /dev/fd/63), beside which no output belongs;
    a file in a folder below /dev (/dev/shm) is a file."""
    mode = _mode(path)
    where = os.path.realpath(path.parent)
    return (mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)) or where == "/dev" \
        or where == "/proc" or where.startswith("/proc" + os.sep)


def _is_dir(path: Path) -> bool:
    mode = _mode(path)
    return mode is not None and stat.S_ISDIR(mode)


def _exists(path: Path) -> OSError:
    if _is_dir(path):   # --force replaces files, not folders
        return IsADirectoryError(errno.EISDIR, "a folder is there; --force replaces only files", str(path))
    return FileExistsError(f"{path} exists (use --force to overwrite)")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temp file in the same folder; without force, refuse to
    replace an existing file (os.link fails atomically if `path` exists).
    The file gets the mode a plain open() would give (0o666 & ~umask), not
    mkstemp's private 0o600.  The temp file's name is short, so that any name
    the file system takes can be written."""
    if _is_stream(path):
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:   # named: the input's name would be put in front
            raise OSError(e.errno, e.strerror, str(path)) from None
        return
    if path.exists() and not force:
        raise _exists(path)
    made = _new_folders(path.parent)   # made here: removed again if the write fails
    try:
        _link_into_place(path, data, force)
    except BaseException:   # Ctrl-C included: nothing is left behind
        for folder in made:   # deepest first; one that got a file meanwhile stays
            try:
                os.rmdir(folder)
            except OSError:
                pass
        raise


def _new_folders(folder: Path) -> list:
    """The folders of `folder`'s path that do not exist yet, deepest first."""
    new = []
    while folder != folder.parent and not os.path.lexists(folder):
        new.append(folder)
        folder = folder.parent
    return new


def _link_into_place(path: Path, data: bytes, force: bool) -> None:
    """write_atomic's file: its folders made, a temp file written, linked as `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):   # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, "a file where the path needs a folder", str(path)) from None
    tmp = None
    try:
        # the pid: what a killed -j worker leaves, the parent finds (_end_pool)
        fd, tmp = tempfile.mkstemp(prefix=f".rescodec-{os.getpid()}-", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:   # os.link: the output appeared meanwhile
        raise _exists(path) from None
    except OSError as e:      # errors name the output, not the temp file
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write(dst: Path | None, data: bytes, force: bool) -> None:
    """dst None: stdout."""
    if dst is None:
        _write_stdout(data)
    else:
        write_atomic(dst, data, force)


def _write_stdout(data: bytes) -> None:
    """All of `data` to stdout, or an OSError naming <stdout>: a pipe whose
    reader left takes part of a write without an error, and the next write
    gets EPIPE ("broken pipe")."""
    try:
        out, view = sys.stdout.buffer, memoryview(data)
        while view:
            view = view[out.write(view):]
        out.flush()
    except OSError as e:
        raise _stdout_failed(e) from None


def _stdout_failed(e: OSError) -> OSError:
    """A failed write to stdout, named <stdout>, not the input.  What is
    left in its buffer goes to /dev/null: Python's flush at exit would fail
    on it again, with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):   # a stdout with no descriptor (click's test runner)
        pass
    return OSError(e.errno, e.strerror or str(e), "<stdout>")


@contextmanager
def _stdout_errors():
    """Printing to stdout: a write that fails (/dev/full, a closed pipe) is one line and exit 1."""
    try:
        yield
    except OSError as e:
        _leave_if_reader_left(e)
        _fail(_problem("<stdout>", _stdout_failed(e)))
        sys.exit(1)


def _leave_if_reader_left(e: OSError) -> None:
    """stdout's reader left (`| head`): exit 141 with no message, as a
    program that SIGPIPE ends (cat, cwebp), once the work in hand is cleaned
    up (SIGPIPE itself would end us at once, and orphan -j's workers)."""
    if e.errno == errno.EPIPE and e.filename in (None, "<stdout>"):
        _stdout_failed(e)   # what is left in stdout's buffer goes nowhere
        sys.exit(141)


def _read_rsc(src: Path | None, max_pixels: int) -> bytes:
    """An .rsc input (src None: stdin) in bounded memory: its magic and size
    are checked before the rest is read (container.read)."""
    if src is None:
        return container.read(sys.stdin.buffer, max_pixels)
    with open(src, "rb") as f:
        return container.read(f, max_pixels)


def _check_free(dst: Path | None, force: bool) -> None:
    """Fail before the work, not after it."""
    if dst is not None and dst.exists() and not force and not _is_stream(dst):
        raise _exists(dst)


def _format(dst: Path | None) -> tuple:
    """(Pillow's format, its save parameters) for dst's extension (PNG for stdout)."""
    return IMAGE_FORMATS[".png" if dst is None or _is_stream(dst) else dst.suffix.lower()]


def _check_fits(dst: Path | None, width: int, height: int) -> None:
    """Before the decode: an output format that cannot hold the picture's size."""
    from .lossless import SIDE_LIMITS
    name, most = SIDE_LIMITS.get(_format(dst)[0], (None, None))
    if most is not None and max(width, height) > most:
        raise ValueError(f"{name} holds at most {most} pixels a side, not {width}x{height}: "
                         f"write .png or .tif instead of {_name(dst, '<stdout>')}")


def _written_mode(img, dst: Path | None) -> str:
    """The mode of what _image_bytes writes: without alpha where the format has none."""
    return img.mode[:-1] if _format(dst)[0] in NO_ALPHA and img.mode in ("RGBA", "LA") else img.mode


def _image_bytes(img, dst: Path | None, notices: list, quality: int | None = None) -> bytes:
    """A PIL image in the format dst's extension names (PNG for stdout), with
    its ICC profile, EXIF and XMP when it has them and the format holds them;
    `quality`: a JPEG's or a (then lossy) WebP's, instead of 95 and lossless."""
    fmt, params = _format(dst)
    params = dict(params)
    if quality is not None and fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
        if fmt == "WEBP":
            params["lossless"] = False
    elif quality is not None:
        notices.append(f"-q sets the quality of a .jpg or .webp output: {fmt} is lossless")
    meta = [key for key in ("icc_profile", "exif", "xmp") if img.info.get(key)]
    exif = img.info.get("exif")
    if exif and fmt != "BMP":
        from . import images
        if not images.exif_reads(exif):   # a crafted file's: TIFF's writer parses it, and fails
            meta.remove("exif")
            notices.append("EXIF left out: unreadable")
        elif fmt == "JPEG" and len(exif) > JPEG_MAX_EXIF:
            meta.remove("exif")
            notices.append(f"JPEG cannot hold EXIF of {len(exif)} bytes (at most {JPEG_MAX_EXIF}): left out")
    icc = img.info.get("icc_profile")
    if icc and fmt == "JPEG" and len(icc) > JPEG_MAX_ICC:   # Pillow would write a count of 0 segments
        meta.remove("icc_profile")
        notices.append(f"JPEG cannot hold an ICC profile of {len(icc)} bytes (at most {JPEG_MAX_ICC}): left out")
    if fmt == "WEBP" and img.mode in ("L", "LA") and "icc_profile" in meta:   # WebP stores grey as RGB
        meta.remove("icc_profile")
        notices.append("WebP keeps grey as RGB, which the grey ICC profile does not describe: left out")
    if fmt == "BMP" and meta:
        notices.append(f"BMP cannot hold metadata: {', '.join(meta)} left out")
    params.update({key: img.info[key] for key in meta if key != "xmp"})
    xmp = img.info.get("xmp")
    if xmp and fmt == "JPEG" and len(xmp) > JPEG_MAX_XMP:
        notices.append(f"JPEG cannot hold XMP of {len(xmp)} bytes (at most {JPEG_MAX_XMP}): left out")
    elif xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    elif xmp and fmt == "PNG":       # Pillow writes PNG's XMP as this iTXt chunk
        from PIL import PngImagePlugin
        params["pnginfo"] = PngImagePlugin.PngInfo()
        params["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
    elif xmp and fmt == "TIFF":      # in the EXIF tags: Pillow's TIFF writer drops exif= beside tiffinfo=
        from PIL import Image
        exif = Image.Exif()
        exif.load(params.get("exif") or b"")
        exif[TIFF_XMP] = xmp
        params["exif"] = exif
    mode = _written_mode(img, dst)
    if mode != img.mode:
        img = img.convert(mode)
        notices.append(f"{fmt} cannot hold transparency: the alpha channel was dropped")
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


# Photos that Pillow cannot open but a camera or phone makes: raw files, HEIF, JPEG XL
PHOTO_EXTENSIONS = {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf",
                    ".orf", ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mef",
                    ".mos", ".mrw", ".raw", ".rwl", ".heic", ".heif", ".hif", ".jxl"}


def _image_extensions() -> set:
    """Every image file extension Pillow knows (.gif, .avif, ...), less .rsc,
    and the photo formats it does not (PHOTO_EXTENSIONS)."""
    from PIL import Image
    return ({e for e in Image.registered_extensions() if e != ".rsc"} | set(IMAGE_SUFFIXES)
            | PHOTO_EXTENSIONS)


# Pillow opens these only to name them (MPEG), or with Ghostscript installed (EPS)
NOT_READ = {".rsc", ".mpg", ".mpeg", ".eps", ".ps"}


def _readable_extensions() -> set:
    """What a folder walk of `encode` takes: the extensions of the formats
    Pillow opens (.gif, .ppm, .avif, ...), less its stubs, which need a
    handler nobody installs (.h5, .wmf), NOT_READ and .rsc (an earlier run's
    outputs)."""
    from PIL import Image, ImageFile
    exts = {".mpo"}   # opened as a JPEG, so not in Image.OPEN under its own name
    for ext, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        if factory is not None and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)):
            exts.add(ext)
    return (exts | IMAGE_SUFFIXES) - NOT_READ


def _walk(top: Path, wanted: set) -> tuple[list, list, int, list]:
    """A folder's files of the wanted extensions, and a symlink among them that
    leads nowhere (a loop: its run says why) -> (those, the other files, the
    number of hidden files and folders, the OSErrors of folders it could not
    list).  Names starting with . are skipped (.git, .DS_Store); symlinked
    folders are not followed."""
    found, other, hidden, unlisted = [], [], 0, []
    for root, dirs, names in os.walk(top, onerror=unlisted.append):
        hidden += sum(d.startswith(".") for d in dirs)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for n in names:
            f = Path(root, n)
            if n.startswith("."):
                hidden += 1
            elif f.suffix.lower() in wanted and (f.is_file() or not f.exists()):
                found.append(f)
            else:
                other.append(f)
    return sorted(found), other, hidden, unlisted


def _none_found(folders: list, other: list, hidden: int, what: str) -> str:
    """"no images in DIR (3 files skipped: ...)": why a walk found nothing."""
    skipped = []
    if other:
        why = "not images rescodec reads" if what == "images" else f"not {what}"
        skipped.append(f"{len(other)} file{'s' * (len(other) > 1)} skipped: {why}, e.g. {other[0].name}")
    if hidden:
        skipped.append(f"{hidden} hidden name{'s' * (hidden > 1)} skipped")
    return f"no {what} in {', '.join(map(str, folders))}" + (f" ({'; '.join(skipped)})" if skipped else "")


def _plan(inputs, out: str | None, suffix: str, wanted: set, what: str = "images"):
    """Pair each input with its output (None: stdin / stdout) -> (pairs, folder,
    what to say if there are none, the OSErrors of folders a walk could not
    list).  `what` names the wanted files ("images").

    With one input file, -o is a file (or an existing folder, or one named
    with a trailing /).  With several inputs, or a folder, -o is a folder, and
    a folder input's *contents* are mirrored under it: `encode photos/ -o enc/`
    writes enc/a.rsc and enc/day2/b.rsc.  Without -o, outputs go next to inputs.
    Mistakes (stdin among other inputs, -o naming a file where a folder is
    needed, two inputs meeting at one output) end the command before any work."""
    if "" in inputs or out == "":   # Path("") is the current folder
        _usage("an empty name" + (" after -o" if out == "" else " among the inputs"))
    if STDIO in inputs and len(inputs) > 1:
        _usage("- (stdin) must be the only input")
    made = {".rsc": {".rsc"}, ".thumb.png": set(THUMB_FORMATS)}.get(suffix, set(IMAGE_FORMATS))
    if out is None and len(inputs) > 1 and Path(inputs[-1]).suffix.lower() in made \
            and not os.path.lexists(inputs[-1]):
        # `encode a.png out.rsc`, as avifenc and cwebp -o take it: a.rsc was written, then out.rsc not found
        _usage(f"{inputs[-1]}: no such file; to name the output, give -o {inputs[-1]}" if len(inputs) == 2 else
               f"{inputs[-1]}: no such file; -o names the outputs' folder for several inputs")
    many = len(inputs) > 1 or any(p != STDIO and _is_dir(Path(p)) for p in inputs)
    if out == STDIO and many:
        _usage("-o - (stdout) takes exactly one input file")
    if out == STDIO and sys.stdout.isatty():   # as gzip does: binary data would garble the terminal
        _usage("-o - would write binary data to the terminal; redirect it (> FILE, | ...)")
    o = Path(out) if out and out != STDIO else None
    folder = None
    if o is not None and (many or _is_dir(o) or out.endswith(("/", os.sep))):
        if _mode(o) is not None and not _is_dir(o):
            _usage(f"{o} is a file, but with several inputs or a folder -o names a folder" if many else
                   f"{o} is a file, but -o ending in / names a folder")
        if many and _mode(o) is None and o.suffix.lower() in {".rsc", *_image_extensions()} \
                and not out.endswith(("/", os.sep)):
            _usage(f"{o} looks like a file name, but with several inputs or a folder -o names a "
                   "folder (end it with / to make one so named)")
        folder = o
    pairs, walked, other, hidden, unlisted = [], [], [], 0, []
    for raw in inputs:
        if raw == STDIO:
            if out is None or folder is not None:
                _usage("reading stdin (-) needs -o naming a file, or -o - for stdout")
            pairs.append((None, o))
            continue
        p = Path(raw)
        if _is_dir(p):
            found, skipped, h, errors = _walk(p, wanted)
            walked.append(p)
            other += skipped
            hidden += h
            unlisted += [e for e in errors   # a folder given twice: said once
                         if all(os.path.realpath(e.filename) != os.path.realpath(u.filename) for u in unlisted)]
            for f in found:
                rel = f.relative_to(p)
                pairs.append((f, (folder / rel.parent if folder else f.parent) / (f.stem + suffix)))
        elif out == STDIO:
            pairs.append((p, None))
        elif folder is not None:
            pairs.append((p, folder / (p.stem + suffix)))
        else:
            if o is None and _stream_name(p):
                _usage(f"{p} names a stream (a pipe, a device or a name in /dev or /proc): reading it needs -o "
                       "naming a file, or -o - for stdout")
            pairs.append((p, o or p.with_name(p.stem + suffix)))
    seen, kept, clashes = {}, [], []
    for src, dst in pairs:
        if dst is not None:
            # real paths: a symlink, or ./a.png beside a.png, is the same file
            key = os.path.realpath(dst)
            # a missing input is not refused here: its run says "no such file or directory"
            if src is not None and key == os.path.realpath(src) and _mode(src) is not None:
                _usage(f"{src} would be overwritten by its own output; choose another -o")
            if key in seen:
                if os.path.realpath(seen[key]) == os.path.realpath(src):   # one file given twice: done once
                    continue
                clashes.append(f"{seen[key]} and {src} would both be written to {dst}")
                continue
            seen[key] = src
        kept.append((src, dst))
    if clashes:   # all of them at once, not one a run
        more = f" ({len(clashes) - 1} more such pair{'s' * (len(clashes) > 2)})" if len(clashes) > 1 else ""
        _usage(f"{clashes[0]}{more}; rename one or give them separate -o folders")
    _check_folders(kept, folder)
    return kept, folder, _none_found(walked, other, hidden, what), unlisted


def _check_folders(pairs, folder: Path | None) -> None:
    """A file where an output's folder should be (-o afile/sub): said before
    the work, which would otherwise be done and then lost."""
    looked = set()
    for _, dst in pairs:
        if dst is None or dst.parent in looked:
            continue
        looked.add(dst.parent)
        p = dst.parent
        while _mode(p) is None and p != p.parent:   # up to what is there
            p = p.parent
        if _mode(p) is not None and not _is_dir(p):
            where = folder if folder is not None and (p == folder or p in folder.parents) else dst
            _fail(f"{where}: a file where the path needs a folder")
            sys.exit(1)


def _check_image_outputs(pairs, formats: dict = IMAGE_FORMATS) -> None:
    for _, dst in pairs:
        if dst is not None and not _is_stream(dst) and dst.suffix.lower() not in formats:
            if not dst.suffix and dst.name.startswith(".") and dst.name.lower() in formats:
                _usage(f"{dst}: the name is only an extension; give the file a name, e.g. "
                       f"photo{dst.name}")
            what = f"{dst.suffix} files" if dst.suffix else "a name without an extension"
            hint = "; rescodec thumb -o NAME.avif writes the AVIF stored inside" if dst.suffix.lower() == ".avif" else ""
            _usage(f"{dst}: cannot write {what}; use {', '.join(formats)}{hint}")


def _check_rsc_outputs(pairs) -> None:
    """encode's twin of _check_image_outputs: with --force, an .rsc under a
    .jpg name would replace the photo.  A file -o is named .rsc: `-o out`
    would be a file with one input and a folder with two (`-o out/` is one)."""
    images = _image_extensions()
    for _, dst in pairs:
        if dst is not None and dst.suffix.lower() in images:
            _usage(f"{dst}: encode writes .rsc files, not {dst.suffix}; name the output .rsc "
                   "(rescodec decode writes images)")
        if dst is not None and dst.suffix.lower() != ".rsc" and not _is_stream(dst):
            _usage(f"{dst}: encode writes .rsc files; name the output {dst.parent / (dst.stem or dst.name)}.rsc, "
                   "or end -o with / for a folder")


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB" if n >= 1000 else f"{n} B"


def _section_names(sections: dict, scale: int) -> dict:
    """An x1 file's mask section holds the head's gain map: named so."""
    return {("gain map" if k == "mask" and scale == 1 else k): v for k, v in sections.items()}


def _sections(sizes: dict, scale: int) -> str:
    return ", ".join(f"{k} {_kb(v)}" for k, v in _section_names(sizes, scale).items())


def _init_worker(threads: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):   # a forked worker just ends; the parent says so
        signal.signal(sig, signal.SIG_DFL)
    import torch
    torch.set_num_threads(threads)      # N workers x threads <= cores: no oversubscription


def _failure(name: str, e: Exception) -> tuple[str, bool]:
    """One line for a file that failed -> (the line, whether it is rescodec's
    own fault: a bug).  Whatever it is, the batch goes on to the next file."""
    from concurrent.futures import BrokenExecutor
    if isinstance(e, OSError):   # writing to stdout, whose reader left: the batch ends
        _leave_if_reader_left(e)
    if isinstance(e, (RscError, ValueError, OSError)):
        return _problem(name, e), False
    if isinstance(e, MemoryError):
        return f"{name}: out of memory", False
    if isinstance(e, BrokenExecutor):   # a worker was killed (the OOM killer): this file was not done
        return f"{name}: not done: a worker process ended abruptly (killed, perhaps for lack of memory)", False
    if debugging():
        raise e
    return f"{name}: internal error: {type(e).__name__}: {e}", True


def _end_pool(pool, pairs, kill: bool, new_folders=()) -> None:
    """Shut the workers down; kill: at once (a signal, or the pool broke), and
    remove the temporary files they were writing (write_atomic names them
    after the writer's pid), which a killed process leaves behind, and the
    folders made for outputs (`new_folders`) that were left empty."""
    procs = dict(pool._processes or {})   # private, but the only handle on the workers before 3.14
    try:
        if kill:
            for p in procs.values():
                p.kill()
    finally:
        # wait=True: shutting down without waiting leaves the pool's wake-up pipe
        # to an exit hook that can find it closed and print a traceback (seen in CI,
        # Python 3.11); the workers are idle or dead by now, so this does not hang.
        pool.shutdown(wait=True, cancel_futures=True)
    if kill:
        temps = tuple(f".rescodec-{pid}-" for pid in procs)
        for d in {dst.parent for _, dst in pairs if dst is not None}:
            try:
                names = [e.name for e in os.scandir(d) if e.name.startswith(temps)]
            except OSError:   # never made, or gone
                continue
            for name in names:
                try:
                    os.unlink(d / name)
                except OSError:
                    pass
        for d in new_folders:
            try:
                os.rmdir(d)   # only if empty: a finished file keeps its folder
            except OSError:
                pass


def _run_each(pairs, fn, kwargs: dict, **how) -> int:
    """_run_batch, where a line that cannot be printed (stdout full or
    closed) is one error line and exit 1, after the files were written."""
    with _stdout_errors():
        return _run_batch(pairs, fn, kwargs, **how)


def _run_batch(pairs, fn, kwargs: dict, *, as_json: bool = False, quiet: bool = False,
               verbose: bool = False, folder: Path | None = None, jobs: int = 1, threads: int | None = None,
               skip_existing: bool = False, none_found: str = "no input files found",
               unlisted: list = ()) -> int:
    """Run fn(src, dst, **kwargs) per pair, in `jobs` processes; one line per
    file (in input order), one error line per failure and per folder a walk
    could not list (`unlisted`, its OSErrors: said first, counted as failed),
    a summary for batches.
    When the data goes to stdout, every line goes to stderr.  Exit status: 0,
    1 when a file failed, 3 when one failed by a bug of rescodec's.  Ctrl-C or
    SIGTERM stops the workers at once, says what was done (the lines, the
    JSON and the summary) and is raised again.  `threads`: torch's per file
    (None: the cores, shared among the jobs); `skip_existing`: a file whose
    output is there is left as it is, and said so, not run."""
    to_err = any(dst is None for _, dst in pairs)
    # pair index -> its JSON row: set in one step, so that a signal cannot
    # leave a file half-counted (said twice, or done and not said)
    rows, internal, broken = {}, False, False
    for k, e in enumerate(unlisted, -len(unlisted)):   # before the pairs' rows; not counted as files
        problem = _problem(e.filename, e) + " (a folder; its files were skipped)"
        _fail(problem)
        rows[k] = {"input": str(e.filename), "error": problem}
    if not pairs:
        if as_json:   # still JSON: a list of no files
            _print_out(json.dumps(list(rows.values()), indent=1) if rows else "[]")
        _fail(none_found)
        return 1
    from concurrent.futures import BrokenExecutor
    from tqdm import tqdm
    # a bar with an ETA for batches on a terminal; lines go above it
    bar = tqdm(total=len(pairs), unit="file", leave=False,
               disable=quiet or len(pairs) < 2 or not sys.stderr.isatty())

    def report(i, get) -> None:
        nonlocal internal, broken
        src, dst = pairs[i]
        name = _name(src, "<stdin>")
        try:
            row, notices = get()
        except Exception as e:   # any: one file's failure must not end the batch
            broken |= isinstance(e, BrokenExecutor)
            problem, ours = _failure(name, e)
            internal |= ours
            bar.clear()
            _fail(problem)
            rows[i] = {"input": name, "output": _name(dst, "<stdout>"), "error": problem}
            return
        finally:
            bar.update(1)
        bar.clear()
        details = row.pop("details", [])
        if not quiet:
            for n in notices:
                _note(name, n)
        line = row.pop("line")
        rows[i] = {**row, "notes": list(notices)} if notices else row   # --json: what stderr says too
        if not as_json and not quiet:
            _echo(line, err=to_err)
            if verbose:
                for d in details:
                    _echo(f"  {d}", err=to_err)
        bar.refresh()

    def skipped(src, dst):
        if src is not None:   # an input that is not there (a typo) fails, as without --skip-existing
            open(src, "rb").close()
        i, o = _name(src, "<stdin>"), _name(dst, "<stdout>")
        return {"input": i, "output": o, "skipped": "the output exists", "line": f"{i} -> {o}  skipped: it exists"}, []

    # an output that is there, a symlink that leads nowhere included; not a folder, which the run refuses
    skip = {i for i, (_, dst) in enumerate(pairs)
            if skip_existing and dst is not None and not _is_stream(dst) and os.path.lexists(dst) and not _is_dir(dst)}
    pool, futures, stop, ended, new_folders = None, {}, None, False, []
    try:
        try:
            if jobs > 1 and len(pairs) - len(skip) > 1:
                from concurrent.futures import ProcessPoolExecutor
                threads = threads or max(1, (os.cpu_count() or 1) // jobs)
                # the outputs' folders not there yet, deepest first: a killed worker may leave them empty
                new_folders = sorted({f for _, dst in pairs if dst is not None for f in _new_folders(dst.parent)},
                                     key=lambda f: len(f.parts), reverse=True)
                pool = ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(threads,))
                futures = {i: pool.submit(fn, src, dst, **kwargs) for i, (src, dst) in enumerate(pairs)
                           if i not in skip}
            elif threads:
                import torch
                torch.set_num_threads(threads)
            for i, (src, dst) in enumerate(pairs):
                report(i, lambda: skipped(src, dst) if i in skip else
                       futures[i].result() if futures else fn(src, dst, **kwargs))
            ended = True
        finally:
            bar.close()
            if pool is not None:
                _end_pool(pool, pairs, kill=not ended or broken, new_folders=new_folders)
    except (KeyboardInterrupt, _Terminated) as e:   # run() ignores a second signal meanwhile
        stop = e
        for i, f in futures.items():   # done while the parent waited on an earlier file
            if i not in rows and f.done() and not f.cancelled():
                if not isinstance(f.exception(), BrokenExecutor):
                    report(i, f.result)
    rows = [rows[i] for i in sorted(rows)]
    if as_json:
        _print_out(json.dumps(rows, indent=1), err=to_err)
    failed = sum("error" in r for r in rows) - len(unlisted)
    n_skipped = sum("skipped" in r for r in rows)
    done = len(rows) - len(unlisted) - failed - n_skipped
    if (len(pairs) > 1 or unlisted) and (failed or unlisted or stop or not quiet):
        where = "" if folder is None else f"; outputs in {folder}" if done else f"; nothing written to {folder}"
        left = f", {len(pairs) + len(unlisted) - len(rows)} not done" if stop else ""
        folders = f"; {len(unlisted)} folder{'s' * (len(unlisted) > 1)} not listed" if unlisted else ""
        passed = f", {n_skipped} skipped (their outputs exist)" if skip_existing else ""
        _echo(f"{done} of {len(pairs)} files done{passed}, {failed} failed{left}{folders}{where}",
              err=bool(failed or unlisted or stop) or to_err or as_json)   # --json: stdout holds the JSON alone
    if stop is not None:
        raise stop
    return 3 if internal else 1 if failed or unlisted else 0


@contextmanager
def _as_path(src: Path | None, max_pixels: int):
    """An input as a path: stdin goes through a temporary file, so that the
    image reader's checks (size, bit depth) hold for it too, and its errors
    say <stdin>, not the temporary file.  A path is the reader's own to open
    (images.load reads a pipe or a device, <(cat a.png), as a file)."""
    if src is not None:
        yield src
        return
    fd, tmp = tempfile.mkstemp(prefix="rescodec-stdin-")
    try:
        with os.fdopen(fd, "wb") as f:
            from . import images
            images.copy_binary(sys.stdin.buffer, f, "<stdin>", max_pixels)
        try:
            yield Path(tmp)
        except RscError as e:
            raise type(e)(str(e).replace(tmp, "<stdin>")) from None
    finally:
        os.unlink(tmp)


@contextmanager
def _tile_bar(shown: bool, what: str):
    """A progress bar over a large photo's tiles (tiling.reporting), stage by
    stage, on a terminal, for a stage that takes over a second; a stage of
    one tile shows none."""
    if not shown or not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm
    from . import tiling
    bar, stage_now = None, None

    def report(stage: str, done: int, total: int) -> None:
        nonlocal bar, stage_now
        if bar is not None and (stage != stage_now or done <= bar.n or total < 2):   # another stage or pass
            bar.close()
            bar, stage_now = None, None
        if total < 2:
            return
        if bar is None:
            bar, stage_now = tqdm(total=total, desc=_shown(f"{what}: {stage}"), unit="tile", leave=False,
                                  delay=1), stage   # a stage done within a second shows nothing
        bar.update(done - bar.n)   # not refresh(), which would show the bar before its delay
    try:
        with tiling.reporting(report):
            yield
    finally:
        if bar is not None:
            bar.close()


def _encode_file(src: Path | None, dst: Path | None, force: bool, st, bar: bool, max_pixels: int,
                 print_psnr: bool = False):
    from . import codec, refine
    _check_free(dst, force)
    progress, pbar = None, None
    steps = st.resolved().refine_steps if st.refine and not st.is_target else 0
    if steps and bar:
        from tqdm import tqdm
        pbar = tqdm(total=refine.steps_of(st.refine_method, steps),
                    desc=_shown(f"refine {src.name if src else 'stdin'}"), unit="it", leave=False,
                    disable=not sys.stderr.isatty())

        def progress(i, n, db):
            pbar.n = i
            pbar.set_postfix_str(f"{db:.2f} dB")
            pbar.refresh()
    try:
        with _as_path(src, max_pixels) as path, _tile_bar(bar, f"encode {src.name if src else 'stdin'}"):
            enc = codec.encode_ex(path, st, progress=progress, max_pixels=max_pixels, measure=print_psnr)
    finally:
        if pbar is not None:
            pbar.close()
    _write(dst, enc.data, force)
    px = enc.header.width * enc.header.height
    bpp = 8 * len(enc.data) / px
    i, o = _name(src, "<stdin>"), _name(dst, "<stdout>")
    db = enc.psnr
    shown = "" if db is None else "  exact" if math.isinf(db) else f"  {db:.2f} dB"
    return ({"input": i, "output": o, "bytes": len(enc.data), "bpp": bpp,
             "scale": enc.header.scale, "model": enc.header.model, "seconds": enc.seconds,
             "sections": enc.sizes, **({} if db is None else {"psnr": None if math.isinf(db) else db}),
             "line": f"{i} -> {o}  {_kb(len(enc.data))}  {bpp:.3f} bpp (whole file){shown}  "
                     f"(x{enc.header.scale}, {enc.seconds:.2f} s)",
             "details": [f"model {enc.header.model}", f"sections: {_sections(enc.sizes, enc.header.scale)}"]},
            enc.notices)


def _decode_file(src: Path | None, dst: Path | None, force: bool, max_pixels: int,
                 temperature: float | None = None, seed: int | None = None, fast: bool = False,
                 quality: int | None = None, bar: bool = False):
    from . import codec, weights
    _check_free(dst, force)
    t0 = time.perf_counter()
    data = _read_rsc(src, max_pixels)
    d = codec.info(data, max_pixels=max_pixels)
    _check_fits(dst, d["width"], d["height"])
    with _tile_bar(bar, f"decode {src.name if src else 'stdin'}"):
        img = codec.decode(data, max_pixels=max_pixels, temperature=temperature, seed=seed, fast=fast)
    notices = []
    _write(dst, _image_bytes(img, dst, notices, quality), force)
    mode = _written_mode(img, dst)
    dt = time.perf_counter() - t0
    sizes = {k: v["bytes"] for k, v in d["sections"].items()}
    i, o = _name(src, "<stdin>"), _name(dst, "<stdout>")
    t = d["z_temperature"] if temperature is None else temperature
    if d["scale"] == 1 and (temperature is not None or seed is not None):
        notices.append("an x1 file has no latent: --temperature and --seed change nothing")
    elif temperature is not None:
        notice = weights.temperature_notice(d["model"], t)
        if notice:
            notices.append(notice)
    if seed is not None and t == 0 and d["scale"] != 1:
        notices.append("--seed has no effect at Z temperature 0")
    if fast and not weights.has_head(weights.entry(d["model"])):
        notices.append(f"{d['model']} has no restoration head: --fast changes nothing")
    return ({"input": i, "output": o, "width": img.width, "height": img.height,
             "mode": mode, "seconds": dt, "model": d["model"], "sections": sizes,
             "z_temperature": t, "z_seed": d["z_seed"] if seed is None else seed,
             "line": f"{i} -> {o}  {img.width}x{img.height} {mode}  ({dt:.2f} s)",
             "details": [f"model {d['model']}, x{d['scale']}, {d['bpp']:.3f} bpp",
                         f"sections: {_sections(sizes, d['scale'])}"]}, notices)


def _thumb_file(src: Path | None, dst: Path | None, force: bool, max_pixels: int, quality: int | None = None):
    from . import codec
    _check_free(dst, force)
    data = _read_rsc(src, max_pixels)
    lr_height, lr_width = container.unpack(data, max_pixels).header.lr_size
    avif = dst is not None and not _is_stream(dst) and dst.suffix.lower() == ".avif"
    if avif:   # the AVIF as stored, not coded again
        out, alpha = codec.thumbnail_avif(data, max_pixels=max_pixels)
    else:
        _check_fits(dst, lr_width, lr_height)
        img, alpha = codec.thumbnail_image(data, max_pixels=max_pixels)
    notices = ["the small picture has no alpha channel: left out"] if alpha else []
    if avif and codec.grey_with_icc(data, max_pixels):
        notices.append("AVIF keeps the grey small picture as RGB, which the grey ICC profile "
                       "does not describe: left out")
    if avif and quality is not None:
        notices.append("-q changes nothing for .avif: the stored AVIF is written as it is")
    _write(dst, out if avif else _image_bytes(img, dst, notices, quality), force)
    i, o = _name(src, "<stdin>"), _name(dst, "<stdout>")
    return ({"input": i, "output": o, "width": lr_width, "height": lr_height,
             "line": f"{i} -> {o}  {lr_width}x{lr_height} thumbnail"}, notices)


def _check_flags(quiet: bool, verbose: bool, force: bool, skip_existing: bool) -> None:
    for a, b, both in (("--quiet", "--verbose", quiet and verbose),
                       ("--force", "--skip-existing", force and skip_existing)):
        if both:
            _usage(f"{a} and {b} cannot be used together")


def _stdout_open(ctx, param, value):
    """-o - needs a stdout: started with it closed (>&-), Python has none."""
    if value == STDIO and sys.stdout is None:
        _fail("<stdout>: closed; -o - has nowhere to write")
        sys.exit(1)
    return value


def _output_options(f):
    """-o, -f, --json, --quiet, -v: shared by encode, decode and thumb."""
    for deco in reversed([
            click.option("-o", "--output", metavar="PATH", callback=_stdout_open,
                         help="Output file (- for stdout), or folder for several inputs "
                              "or a folder."),
            click.option("-f", "--force", is_flag=True, help="Replace existing outputs."),
            click.option("--skip-existing", is_flag=True,
                         help="Leave inputs whose output is there, and say so (exit 0): a re-run "
                              "codes only new files."),
            click.option("--json", "as_json", is_flag=True, help="Print results as JSON."),
            click.option("--quiet", is_flag=True, help="Print errors only."),
            click.option("-v", "--verbose", is_flag=True,
                         help="Also print each file's model and the size of its parts.")]):
        f = deco(f)
    return f


class _Terminated(BaseException):
    """SIGTERM, raised where the program is, so that cleanup runs on the way out (as for Ctrl-C)."""


def _stopping() -> None:
    """After the first SIGINT or SIGTERM, the next are ignored: a second one
    broke off the cleanup of the first (the -j workers' end: it hung)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _terminated(signum, frame) -> None:
    _stopping()
    raise _Terminated


def _interrupted(signum, frame) -> None:
    _stopping()
    raise KeyboardInterrupt


class _Interrupted(BaseException):
    """Ctrl-C, past click: click prints an empty line before it turns KeyboardInterrupt into Abort."""


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, package_name="rescodec")   # the code's, not a stale install's metadata
def main():
    """rescodec: an image codec built on an invertible rescaling flow.

    An input or output of - means stdin or stdout."""


_MAX_PIXELS = click.option("--max-pixels", type=click.IntRange(1), default=MAX_PIXELS,
                           show_default=True,
                           help="Refuse files of more pixels (guards against decompression bombs).")
class _Bytes(click.ParamType):
    """A byte count: 20000, or with a unit, k/M (10^3, 10^6; kB, MB) or KiB/MiB
    (2^10, 2^20); a number's range is settings.validate's to check."""
    name = "bytes"
    UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6,
             "kib": 2 ** 10, "mib": 2 ** 20}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = self.UNITS.get(m.group(2).lower()) if m else None
        if unit is None or (unit == 1 and "." in m.group(1)):
            self.fail(f"{value!r} is not a number of bytes (20000, 20k, 20KiB, 1.5M)", param, ctx)
        try:
            return round(float(m.group(1)) * unit) if "." in m.group(1) else int(m.group(1)) * unit
        except OverflowError:   # a float beyond any file
            self.fail(f"{value!r} is beyond any file's size", param, ctx)


_BYTES = _Bytes()
_THREADS = click.option("--threads", type=click.IntRange(1, 1024), default=None,
                        help="CPU threads for each file (default: all cores, shared among the -j "
                             "jobs).")


def _JOBS(verb: str):
    return click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                        help=f"Files {verb} at once.")


_OUTPUT_QUALITY = click.option("-q", "--quality", type=click.IntRange(0, 100), default=None,
                               help="Quality of a .jpg or .webp output, 0-100 (as avifdec's -q): "
                                    "default 95 for JPEG, lossless WebP.")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@_output_options
@_MAX_PIXELS
@click.option("-q", "--quality", type=int, default=None,
              help=f"0-100: higher gives a bigger, sharper file (default "
                   f"{settings.DEFAULT_QUALITY}).")
@click.option("--bpp", type=float, default=None,
              help="Aim for this many bits per pixel, counting the whole file; quality "
                   "is then chosen per image.")
@click.option("--size", "size_", type=_BYTES, default=None, metavar="BYTES",
              help="Aim for a file of this many bytes (20000, 20k, 20KiB, 1.5M); as --bpp.")
@click.option("--print-psnr", is_flag=True,
              help="Also decode each file and print its PSNR against the image (as --psnr "
                   "judges it; \"psnr\" in --json, null where exact), as cwebp's -print_psnr.")
@click.option("--psnr", type=float, default=None, metavar="DB",
              help="The lowest -q whose decode reaches this PSNR against the image (RGB; "
                   "a grey image's one channel), above 0 and at most 100 dB; about 7 encodes and decodes.")
@click.option("-s", "--scale", type=SCALE_CHOICES, default=None,
              help="Shrink each side by this factor inside the file: 2 is sharper and "
                   "bigger, 16 smallest; 1 keeps the full size, with no flow "
                   "(default: chosen by -q).")
@click.option("--model", help="An installed model (see `rescodec models`); default: the "
                              "scale's default.")
@click.option("--lr-codec", type=click.Choice(settings.LR_CODECS), default=None,
              help="How the thumbnail inside the file is stored: avif (lossy, smaller; the "
                   "default) or lossless (bigger files).")
@click.option("--lr-quality", type=int, default=None,
              help="AVIF quality of the thumbnail (default: from -q).")
@click.option("--speed", "lr_speed", type=int, default=None, metavar="0-10",
              help="AVIF encoder speed for the thumbnail, 0 (slowest, smallest files) to 10 "
                   "(fastest). Default 3, 4 for -q 86-100 (the full-size photo at AVIF quality 61+), and 0 "
                   "with --refine; "
                   "4 encodes about twice as fast for about 1 percent more bytes at the same "
                   "quality. Decoding does not change.")
@click.option("--lr-step", type=int, default=None,
              help="Lossless thumbnail: keep every Nth colour level; larger is smaller "
                   "and blurrier (default: the model's own).")
@click.option("--lr-space", type=click.Choice(settings.LR_SPACES), default=None,
              help="Lossless thumbnail: store colours as rgb, or ycc (fewer bytes). "
                   "Default: the model's own.")
@click.option("--bits", type=int, default=1, show_default=True,
              help="Edge mask detail: more levels keep edges crisper, at a few more bytes.")
@click.option("--threshold", type=float,
              default=None, help="Edge mask threshold (0..255 scale): higher marks fewer edges, "
                                 "so the file is smaller. Default: the model's own.")
@click.option("--norm", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="Edge mask: how edge strength is measured (rarely worth changing).")
@click.option("--refine", is_flag=True,
              help="Encode slowly for a better file at about the same size: codes the "
                   "thumbnail (or at x1 the photo) at AVIF speed 0, at x1 chooses the "
                   "restoration's strength per block (which -q 86-100 always do), and where -q "
                   "chose the scale (up to -q 57) writes a plain file of another scale instead "
                   "where that is better at the same size. A lossless thumbnail is tuned to the decoder.")
@click.option("--refine-iters", type=click.IntRange(1, 1000), default=None, metavar="N",
              help="Also tune the thumbnail to the decoder in N steps (implies --refine; "
                   "not at x1); slow, and at the same size rarely better. Default: none for an "
                   "AVIF thumbnail, the method's own for a lossless one.")
@click.option("--refine-method", type=click.Choice(settings.REFINE_METHODS),
              default=settings.EncodeSettings.refine_method, show_default=True,
              help="rd weighs bytes against sharpness; hcd changes the thumbnail less.")
@click.option("--device", type=click.Choice(settings.DEVICES), default="auto",
              show_default=True, help="Where --refine runs.")
@click.option("--temperature", type=float, default=None,
              help="Random fine texture drawn at decode, 0 (none) to 1 (the most the model "
                   "was trained for; up to 4 is taken, with a note); higher costs a little PSNR. "
                   "Default: the model's own.")
@click.option("--seed", type=int,
              default=settings.EncodeSettings.seed, show_default=True,
              help="Seed of that randomness, stored in the file.")
@click.option("--metadata", default=settings.EncodeSettings.metadata, show_default=True, metavar="LIST",
              help="The source's metadata to keep: all, none, or a comma list of exif, icc, xmp "
                   "(none leaves out a camera's EXIF, GPS position included; without its ICC "
                   "profile a photo in a wide-gamut space shows other colours).")
@_JOBS("encoded")
@_THREADS
def encode(inputs, output, force, skip_existing, as_json, quiet, verbose, max_pixels, quality, bpp, size_, psnr,
           scale, model, lr_codec, lr_quality, lr_speed, lr_step, lr_space, bits, threshold, norm, refine, refine_iters,
           refine_method, device, temperature, seed, metadata, jobs, threads, print_psnr):
    """Encode images (PNG, JPEG, TIFF, WebP, GIF, ... what Pillow reads) or folders
    of them into .rsc files; a folder's names starting with . are skipped."""
    _check_flags(quiet, verbose, force, skip_existing)
    _check_model_option(model)
    iters = refine_iters if refine_iters is not None else bool(refine)
    try:
        st = settings.EncodeSettings(
            scale=int(scale) if scale else None, quality=quality, bpp=bpp, size=size_, psnr=psnr, bits=bits,
            threshold=threshold, norm=int(norm), temperature=temperature, seed=seed, model=model,
            refine=iters, refine_method=refine_method, device=device, lr_codec=lr_codec,
            lr_quality=lr_quality, lr_speed=lr_speed, lr_step=lr_step, lr_space=lr_space, metadata=metadata)
        st.target_scales() if st.is_target else st.resolved()   # a bad option or missing model: before any file
    except WeightsError as e:       # a model is missing: not a usage error
        _fail(str(e))
        sys.exit(1)
    except ValueError as e:         # an option out of range: settings.validate says which
        _fail(str(e))
        sys.exit(2)
    pairs, folder, none_found, unlisted = _plan(inputs, output, ".rsc", _readable_extensions())
    _check_rsc_outputs(pairs)
    sys.exit(_run_each(pairs, _encode_file,
                       dict(force=force, st=st, bar=jobs == 1 and not quiet and not as_json, max_pixels=max_pixels,
                            print_psnr=print_psnr),
                       as_json=as_json, quiet=quiet, verbose=verbose, folder=folder, jobs=jobs, threads=threads,
                       skip_existing=skip_existing, none_found=none_found, unlisted=unlisted))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@_output_options
@_MAX_PIXELS
@click.option("--temperature", type=float, default=None,
              help="Draw the random fine texture at this temperature instead of the file's "
                   "own (0: none).")
@click.option("--seed", type=int, default=None,
              help="Draw that texture from this seed instead of the file's own.")
@click.option("--fast", is_flag=True,
              help="Skip the decoder's restoration head: x2 files (-q 5-40) decode about 2.5x "
                   "as fast and x1 files (-q 41-100) as plain AVIF, 0.1-0.5 dB lower "
                   "(BENCHMARKS.md, \"A fast decode\" and \"Speed\").")
@_OUTPUT_QUALITY
@_JOBS("decoded")
@_THREADS
def decode(inputs, output, force, skip_existing, as_json, quiet, verbose, max_pixels, temperature, seed, fast,
           quality, jobs, threads):
    """Decode .rsc files, or folders of them (NAME.rsc -> NAME.decoded.png).

    -o NAME.ext picks the format: png, jpg/jpeg (quality 95 unless -q), webp
    (lossless unless -q), tif/tiff or bmp; stdout (-o -) gets PNG."""
    _check_flags(quiet, verbose, force, skip_existing)
    try:
        settings.EncodeSettings(temperature=temperature, seed=0 if seed is None else seed).validate()
    except ValueError as e:
        _fail(str(e))
        sys.exit(2)
    pairs, folder, none_found, unlisted = _plan(inputs, output, ".decoded.png", {".rsc"}, ".rsc files")
    _check_image_outputs(pairs)
    sys.exit(_run_each(pairs, _decode_file, dict(force=force, max_pixels=max_pixels, temperature=temperature,
                                                 seed=seed, fast=fast, quality=quality,
                                                 bar=jobs == 1 and not quiet and not as_json),
                       as_json=as_json, quiet=quiet, verbose=verbose, folder=folder, jobs=jobs, threads=threads,
                       skip_existing=skip_existing, none_found=none_found, unlisted=unlisted))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@_output_options
@_MAX_PIXELS
@_OUTPUT_QUALITY
def thumb(inputs, output, force, skip_existing, as_json, quiet, verbose, max_pixels, quality):
    """Save the small picture stored inside .rsc files (NAME.rsc -> NAME.thumb.png),
    without decoding them: fast.  -o NAME.ext picks the format as for decode;
    -o NAME.avif writes the stored AVIF itself, not coded again."""
    _check_flags(quiet, verbose, force, skip_existing)
    pairs, folder, none_found, unlisted = _plan(inputs, output, ".thumb.png", {".rsc"}, ".rsc files")
    _check_image_outputs(pairs, THUMB_FORMATS)
    sys.exit(_run_each(pairs, _thumb_file, dict(force=force, max_pixels=max_pixels, quality=quality),
                       as_json=as_json, quiet=quiet, verbose=verbose, folder=folder,
                       skip_existing=skip_existing, none_found=none_found, unlisted=unlisted))


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print as JSON: an object, or for several files a list of them, each with its \"file\".")
@click.option("--check", is_flag=True,
              help="Also decode every section but run no network (the small picture, the mask, alpha, "
                   "metadata) and find the model installed: a damaged file fails, as decode would, "
                   "in a fraction of its time.")
@_MAX_PIXELS
def info(files, as_json, max_pixels, check):
    """Show .rsc files' header fields, section sizes and bpp."""
    from . import codec
    if "" in files:   # Path("") is the current folder
        _usage("an empty name")
    if STDIO in files and len(files) > 1:
        _usage("- (stdin) must be the only input")
    rows, failed, shown = [], False, 0   # --json's rows of several files; files shown
    with _stdout_errors():
        for file in files:
            name = "<stdin>" if file == STDIO else file
            try:
                data = _read_rsc(None if file == STDIO else Path(file), max_pixels)
                d = codec.info(data, max_pixels=max_pixels)
                if check:
                    codec.check(data, max_pixels=max_pixels)
                    d["check"] = "ok"   # every section decodes and the model is installed
            except (RscError, OSError) as e:   # said, and the other files still shown
                problem = _problem(name, e)
                _fail(problem)
                failed = True
                rows.append({"file": name, "error": problem})
                continue
            if len(files) == 1:
                _print_info(d, as_json)
            elif as_json:
                rows.append({"file": name, **d})
            else:   # as head(1) heads several files
                _echo(f"{chr(10) if shown else ''}==> {name} <==")
                _print_info(d, as_json)
            shown += 1
        if as_json and len(files) > 1:
            _print_out(json.dumps(rows, indent=1))
    sys.exit(1 if failed else 0)


def _print_info(d: dict, as_json: bool) -> None:
    if as_json:
        _print_out(json.dumps(d, indent=1))
        return
    sections = d.pop("sections")
    unused = set()   # fields a file of this kind holds no value for (--json keeps them)
    if d["scale"] == 1:   # no flow: no mask (its section may hold the head's gain map) and no latent
        unused |= {"mask_bits", "mask_norm", "mask_threshold", "mask_sigma", "z_seed", "z_temperature"}
        coder = d.pop("mask_coder")
        d["gain_map"] = coder.split(", ", 1)[1] if coder.startswith("head gain map") else "none"
        sections = _section_names(sections, 1)
    if d["lr_codec"] in ("avif", "av1"):   # AVIF takes 8-bit RGB: no step or colour space of its own
        unused |= {"lr_step", "lr_space"}
    for k, v in d.items():
        if k in unused:
            continue
        if isinstance(v, dict):     # metadata: name -> bytes
            v = ", ".join(f"{name} {n} B" for name, n in v.items()) or "none"
        if k == "lr_codec" and v == "av1":   # how it is stored; the option that makes it says avif
            v = "av1 (--lr-codec avif, stored without AVIF's boxes)"
        click.echo(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    for k, v in sections.items():
        click.echo(f"section {k:16s} {v['bytes']:8d} B  {100 * v['share']:5.1f} %")


def _by_version(name: str) -> tuple:
    """A sort key: rescodec-x2-avif-v9 before rescodec-x2-avif-v10."""
    stem, _, tail = name.rpartition("-v")
    return (stem, int(tail), name) if stem and tail.isdigit() else (name, -1, name)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models(as_json):
    """List the installed models: scale, how the thumbnail is stored, file
    size, training time, validation results and what the encoder uses each for."""
    from . import weights
    try:
        entries, folder = weights.manifest(), weights.weights_dir()
    except (RscError, OSError) as e:
        _fail(str(e))
        sys.exit(1)
    if not entries:
        _fail(f"no models installed in {folder}")
        sys.exit(1)
    try:
        with _stdout_errors():
            _list_models(entries, folder, as_json)
    except (TypeError, ValueError, AttributeError, KeyError) as e:   # a manifest edited by hand
        _fail(f"{folder / 'manifest.json'}: a malformed entry ({type(e).__name__}: {e})")
        sys.exit(1)


def _list_models(entries: dict, folder: Path, as_json: bool) -> None:
    from . import weights
    problems = []
    uses = weights.used_for(problems)
    for p in problems:   # what encode would refuse
        _note(folder / "manifest.json", p)
    rows = []
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].get("scale", 0), *_by_version(kv[0]))):
        path = folder / e["file"] if e.get("file") else None
        val = e.get("validation") or {}
        rows.append({"name": name, "scale": e.get("scale"), "default": bool(e.get("default")),
                     "used_for": uses.get(name, []),
                     "lr_codec": (e.get("train_config") or {}).get("lr_codec") or "lossless",
                     "file": str(path) if path else None,
                     "bytes": path.stat().st_size if path and path.is_file() else None,
                     # the check loading it makes: a damaged or replaced file is not usable
                     "hash_ok": bool(path and path.is_file() and weights.sha256_file(path) == e.get("sha256")),
                     "cpu_hours": e.get("cpu_hours_total", e.get("cpu_hours")),
                     "bpp": val.get("bpp"), "psnr_rgb": val.get("psnr_rgb"),
                     "validation_note": val.get("note"),
                     "temperature": e.get("temperature", 0.0),
                     "restoration_head": weights.has_head(e),
                     "base_model": (e.get("train_config") or {}).get("base_model") or None})
    if as_json:
        _print_out(json.dumps(rows, indent=1))
        return
    table = [("model", "scale", "picture", "size", "training", "val", "what it is", "the encoder uses it for")]
    for r in rows:
        what = [f"texture, t = {r['temperature']:g}"] if r["temperature"] else (
            ["plain AVIF decode"] if r["scale"] == 1 and not r["restoration_head"] else [])
        if r["restoration_head"]:
            what.append(f"head on {r['base_model'] or 'full-size AVIF'}")
        val = (f"{r['bpp']:.3f} bpp" if r["bpp"] is not None else "") + \
              (f" {r['psnr_rgb']:.2f} dB" if r["psnr_rgb"] is not None else "")
        table.append((r["name"], f"x{r['scale']}", r["lr_codec"],
                      "file missing" if r["bytes"] is None else f"{r['bytes'] / 1000:.0f} KB"
                      + ("" if r["hash_ok"] else " (fails its SHA-256 check)"),
                      f"{r['cpu_hours']:.1f} CPU-h" if r["cpu_hours"] is not None else "-",
                      val.strip() or "-", ", ".join(what) or "-",
                      "; ".join(r["used_for"]) or ("--model only" if not r["default"] else "-")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo("  ".join(f"{c:{w}s}" for c, w in zip(row, widths)) + "  " + row[-1])
    click.echo("val: whole-file bpp and RGB PSNR on the validation photos at the model's own "
               "settings, LR quality 75 for an AVIF picture (--json: validation_note)")


@main.command()
@click.argument("photo")
@click.option("-q", "--quality", "qualities", type=click.IntRange(0, 100), multiple=True,
              help=f"rescodec quality; may be given several times (default {settings.DEFAULT_QUALITY}).")
@click.option("-s", "--scale", type=SCALE_CHOICES, default=None, help="Force rescodec's scale.")
@click.option("--model", default=None,
              help="Use this installed model (`rescodec models`); -q is then its thumbnail's quality.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
@click.option("--save", type=click.Path(file_okay=False),
              help="Write labelled PNG strips here: the codecs side by side, and rescodec "
                   "decoded at texture temperature 0, the file's own and 1.")
@click.option("-f", "--force", is_flag=True, help="Replace existing strips.")
@_MAX_PIXELS
def compare(photo, qualities, scale, model, as_json, save, force, max_pixels):
    """Compare rescodec with JPEG, WebP, AVIF and Lanczos + AVIF at the same size."""
    _need_bench_extras("compare", ("skimage.metrics",))
    from .evaluation.compare import compare as run_compare, format_table
    if photo == "" or save == "":   # Path("") is the current folder
        _usage("an empty name" + (" after --save" if save == "" else ""))
    _check_model_option(model)
    src = None if photo == STDIO else Path(photo)
    try:
        st = [settings.EncodeSettings(quality=q, scale=int(scale) if scale else None, model=model)
              for q in (qualities or [settings.DEFAULT_QUALITY])]
        notices = []
        name = "stdin" if src is None else src.stem
        with _as_path(src, max_pixels) as path:
            rows = run_compare(path, st, save=save, name=name, notices=notices, force=force,
                               max_pixels=max_pixels)
    except (RscError, OSError) as e:
        _fail(_problem(_name(src, "<stdin>"), e))
        sys.exit(1)
    except ValueError as e:     # an option out of range: settings.validate says which
        _fail(str(e))
        sys.exit(2)
    for n in notices:
        _note(_name(src, "<stdin>"), n)
    _print_out(json.dumps(_finite(rows), indent=1) if as_json else format_table(rows))


def _need_bench_extras(command: str, modules) -> None:
    """compare's SSIM and bench's BD-rates and plot come with the [bench]
    extras: without them, one line before the work, not an internal error after it."""
    import importlib.util

    def absent(m: str) -> bool:
        try:
            return importlib.util.find_spec(m) is None
        except ImportError:   # its package (skimage) is missing or broken
            return True
    missing = [m for m in modules if absent(m)]
    if missing:
        _fail(f"{command} needs the bench extras ({', '.join(m.split('.')[0] for m in missing)}): "
              f"pip install 'rescodec[bench]'")
        sys.exit(1)


def _finite(rows: list) -> list:
    """JSON has no NaN or Infinity: null for SSIM too small to measure, or PSNR of an exact copy."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
            for r in rows]


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for points.csv, summary.md/json and rd.png.")
@click.option("-f", "--force", is_flag=True, help="Replace the files of an earlier run in --out.")
def bench(folder, out, force):
    """Rate-distortion over a folder: rescodec's whole quality range against AVIF,
    Lanczos + AVIF, WebP and JPEG; CSV, plot, PSNR at fixed sizes, BD-rates."""
    _need_bench_extras("bench", ("skimage.metrics", "matplotlib"))
    from .evaluation.compare import BENCH_FILES, bench as run_bench
    from .training.train import list_images
    try:
        for name in BENCH_FILES:   # before the work, which takes minutes
            _check_free(Path(out) / name, force)
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file where --out or a folder above it should be
        _fail(_problem(str(out), e))
        sys.exit(1)
    written = {os.path.realpath(Path(out) / name) for name in BENCH_FILES}   # an --out inside FOLDER
    paths = [p for p in list_images([folder]) if os.path.realpath(p) not in written]
    if not paths:
        _fail(f"{folder}: no images found")
        sys.exit(1)
    summary = run_bench(paths, Path(out))
    from .evaluation.compare import summary_markdown
    _print_out(summary_markdown(summary))
    click.echo(f"wrote {out}/{', '.join(summary['written'])}")
    sys.exit(1 if summary["failed"] else 0)


@main.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("name")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False),
              help="Validation images; their PSNR and bpp go into the manifest.")
@click.option("--data-note", default="", help="Training data description for the manifest.")
@click.option("--default/--no-default", "make_default", default=True, show_default=True,
              help="Make NAME the default model of its scale.")
@click.option("-f", "--force", is_flag=True,
              help="Replace an installed model of that name (files made with it will no longer decode).")
def export_cmd(run, name, val_dir, data_note, make_default, force):
    """Export RUN/checkpoint.pt into the weights folder as model NAME."""
    from .training.train import export_run
    try:
        e = export_run(Path(run), name, Path(val_dir) if val_dir else None, data_note, make_default, force)
    except (ValueError, OSError) as err:   # the weights folder is as it was
        _fail(str(err))
        sys.exit(1)
    val = e.get("validation")
    click.echo(f"exported {name}: {e['file']} sha256 {e['sha256'][:16]}..."
               + (f" val {val['bpp']} bpp {val['psnr_rgb']} dB ({val['images']} images)" if val else ""))


@main.command(add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def train(ctx):
    """Train a model (see `rescodec train --help`; same as python -m rescodec.training)."""
    from .training.train import main as train_main
    sys.exit(train_main(ctx.args))


_OUTPUT_ERRNOS = (errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF)


def run() -> None:
    """Console entry point: no traceback reaches a user unless RESCODEC_DEBUG is set."""
    signal.signal(signal.SIGTERM, _terminated)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # ignored: started in the background
        signal.signal(signal.SIGINT, _interrupted)
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:   # `rescodec` alone (click 8.2+): the help
        click.echo(e.ctx.get_help(), err=True)
        sys.exit(e.exit_code)
    except click.UsageError as e:      # click's own usage errors: one line, as rescodec's
        hint = f"; see '{e.ctx.command_path} --help'" if e.ctx else ""
        _fail(" ".join(e.format_message().split()).rstrip(".") + hint)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt, _Interrupted):
        _fail("interrupted")
        sys.exit(130)
    except _Terminated:
        _fail("terminated")
        sys.exit(128 + signal.SIGTERM)
    except SystemExit:
        if isinstance(sys.stdout, click.utils.PacifyFlushWrapper):   # click's own exit 1 on a broken
            sys.exit(141)                                            # pipe (--help, compare): as ours
        raise
    except Exception as e:  # the last guard: one line, not a traceback
        if isinstance(e, OSError) and e.filename in (None, "<stdout>") and e.errno in _OUTPUT_ERRNOS:
            _leave_if_reader_left(e)   # printing (the help, --json): a file's error names the file
            _fail(_problem("<stdout>", _stdout_failed(e)))
            sys.exit(1)
        if debugging():
            raise
        _fail(internal_error(e))
        sys.exit(3)


if __name__ == "__main__":
    run()

"""Which output each input of a command gets: files, folders walked and
mirrored under -o, stdin and stdout, and the mistakes (two inputs meeting at
one output, an input its own output) refused before any work."""
from __future__ import annotations

import os
import stat
import sys
import unicodedata
from pathlib import Path

from . import terminal
from .atomic_write import is_dir, is_stream, mode_of
from .image_folders import IMAGE_SUFFIXES   # what bench and training read: encode reads them all, and more
from .image_output import IMAGE_FORMATS, THUMB_FORMATS

STDIO = "-"                          # an input of - reads stdin, -o - writes stdout


def _stream_name(path: Path) -> bool:
    """Whether `path` is a pipe or device, or a name in /dev itself or under
    /proc (/dev/stdin, <(cmd)'s /dev/fd/63), beside which no output belongs;
    a file in a folder below /dev (/dev/shm) is a file."""
    mode = mode_of(path)
    where = os.path.realpath(path.parent)
    return (mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)) or where == "/dev" \
        or where == "/proc" or where.startswith("/proc" + os.sep)


# Photos that Pillow cannot open but a camera or phone makes: raw files, HEIF, JPEG XL
PHOTO_EXTENSIONS = {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf",
                    ".orf", ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mef",
                    ".mos", ".mrw", ".raw", ".rwl", ".heic", ".heif", ".hif", ".jxl"}


def image_extensions() -> set:
    """Every image file extension Pillow knows (.gif, .avif, ...), less .rsc,
    and the photo formats it does not (PHOTO_EXTENSIONS)."""
    from PIL import Image
    return ({e for e in Image.registered_extensions() if e != ".rsc"} | set(IMAGE_SUFFIXES)
            | PHOTO_EXTENSIONS)


# Pillow opens these only to name them (MPEG), or with Ghostscript installed (EPS)
NOT_READ = {".rsc", ".mpg", ".mpeg", ".eps", ".ps"}


def readable_extensions() -> set:
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


def _walk(top: Path, wanted: set) -> tuple[list, list, dict, list]:
    """A folder's files of the wanted extensions, and a symlink among them that
    leads nowhere (a loop: its run says why) -> (those, the other files, the
    numbers of names passed by {"hidden": ..., "links": ...}, the OSErrors of
    folders it could not list).  Names starting with . are skipped (.git,
    .DS_Store); symlinked folders are not followed (a loop would not end)."""
    found, other, passed, unlisted = [], [], {"hidden": 0, "links": 0}, []
    for root, dirs, names in os.walk(top, onerror=unlisted.append):
        passed["hidden"] += sum(d.startswith(".") for d in dirs)
        passed["links"] += sum(os.path.islink(os.path.join(root, d)) for d in dirs if not d.startswith("."))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for n in names:
            f = Path(root, n)
            if n.startswith("."):
                passed["hidden"] += 1
            elif f.suffix.lower() in wanted and (f.is_file() or not f.exists()):
                found.append(f)
            else:
                other.append(f)
    return sorted(found), other, passed, unlisted


def _none_found(folders: list, other: list, passed: dict, what: str) -> str:
    """"no images in DIR (3 files skipped: ...)": why a walk found nothing."""
    skipped = []
    if other:
        why = "not images rescodec reads" if what == "images" else f"not {what}"
        skipped.append(f"{len(other)} file{'s' * (len(other) > 1)} skipped: {why}, e.g. {other[0].name}")
    hidden, links = passed.get("hidden", 0), passed.get("links", 0)
    if hidden:
        skipped.append(f"{hidden} hidden name{'s' * (hidden > 1)} skipped")
    if links:
        skipped.append(f"{links} symlinked folder{'s' * (links > 1)} not followed")
    return f"no {what} in {', '.join(map(str, folders))}" + (f" ({'; '.join(skipped)})" if skipped else "")


STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def is_stdout(path: Path) -> bool:
    """Whether `path` names this process's stdout (-o /dev/stdout): written as
    -o -, so that no line of text lands in the data.  By its name: another
    name of the same file (-o /dev/null > /dev/null) is a file as before."""
    return os.path.normpath(os.path.abspath(path)) in STDOUT_NAMES and sys.stdout is not None


def ignores_case(folder: Path) -> bool:
    """Whether the file system of `folder` (or of the nearest folder above it
    that is there) compares names without case, as macOS's, Windows' and SD
    cards' (FAT, exFAT) do: a name there with its case swapped is the same
    file."""
    d = Path(os.path.realpath(folder))
    while not os.path.isdir(d) and d != d.parent:
        d = d.parent
    try:
        names = [d] + [Path(e.path) for _, e in zip(range(64), os.scandir(d))]
    except OSError:
        names = [d]
    for p in names:
        if p.name and p.name.swapcase() != p.name:
            try:
                return os.path.samefile(p, p.with_name(p.name.swapcase()))
            except OSError:   # no such file: names keep their case here
                return False
    return False


def _clash_key(real: str, folders: dict) -> str:
    """The key two outputs clash on: their real path (`real`, resolved), and
    where their folder ignores case, that path's case and Unicode form
    aside.  `folders` remembers each folder's answer."""
    parent = os.path.dirname(real)
    if parent not in folders:
        folders[parent] = ignores_case(Path(parent))
    return unicodedata.normalize("NFC", real).casefold() if folders[parent] else real


def plan(inputs, out: str | None, suffix: str, wanted: set, what: str = "images"):
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
        terminal.usage("an empty name" + (" after -o" if out == "" else " among the inputs"))
    if STDIO in inputs and len(inputs) > 1:
        terminal.usage("- (stdin) must be the only input")
    if out not in (None, STDIO) and is_stdout(Path(out)):
        out = STDIO
    made = {".rsc": {".rsc"}, ".thumb.png": set(THUMB_FORMATS)}.get(suffix, set(IMAGE_FORMATS))
    if out is None and len(inputs) > 1 and Path(inputs[-1]).suffix.lower() in made \
            and not os.path.lexists(inputs[-1]):
        # `encode a.png out.rsc`, as avifenc and cwebp -o take it: a.rsc was written, then out.rsc not found
        terminal.usage(f"{inputs[-1]}: no such file; to name the output, give -o {inputs[-1]}" if len(inputs) == 2 else
                       f"{inputs[-1]}: no such file; -o names the outputs' folder for several inputs")
    given = len(inputs)   # -o names a folder for several inputs, whatever is left out below
    many = given > 1 or any(p != STDIO and is_dir(Path(p)) for p in inputs)
    if out == STDIO and many:
        terminal.usage("-o - (stdout) takes exactly one input file")
    if out == STDIO and sys.stdout.isatty():   # as gzip does: binary data would garble the terminal
        terminal.usage("-o - would write binary data to the terminal; redirect it (> FILE, | ...)")
    o = Path(out) if out and out != STDIO else None
    folder = None
    if o is not None and (many or is_dir(o) or out.endswith(("/", os.sep))):
        if mode_of(o) is not None and not is_dir(o):
            kind = "a device" if stat.S_ISCHR(mode_of(o)) or stat.S_ISBLK(mode_of(o)) else "a file"
            terminal.usage(f"{o} is {kind}, but with several inputs or a folder -o names a folder" if many else
                           f"{o} is {kind}, but -o ending in / names a folder")
        if many and mode_of(o) is None and o.suffix.lower() in {".rsc", *image_extensions()} \
                and not out.endswith(("/", os.sep)):
            terminal.usage(f"{o} looks like a file name, but with several inputs or a folder -o names a "
                           "folder (end it with / to make one so named)")
        folder = o
    pairs, walked, other, passed, unlisted = [], [], [], {}, []
    for raw in inputs:
        if raw == STDIO:
            if out is None or folder is not None:
                terminal.usage("reading stdin (-) needs -o naming a file, or -o - for stdout")
            pairs.append((None, o))
            continue
        p = Path(raw)
        if is_dir(p):
            found, skipped, names_passed, errors = _walk(p, wanted)
            walked.append(p)
            other += skipped
            for k, v in names_passed.items():
                passed[k] = passed.get(k, 0) + v
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
                terminal.usage(f"{p} names a stream (a pipe, a device or a name in /dev or /proc): reading it needs -o "
                               "naming a file, or -o - for stdout")
            pairs.append((p, o or p.with_name(p.stem + suffix)))
    seen, kept, clashes, own, folders = {}, [], [], [], {}
    for src, dst in pairs:
        if dst is not None:
            # real paths: a symlink, or ./a.png beside a.png, is the same file
            real = os.path.realpath(dst)
            key = _clash_key(real, folders)
            # a missing input is not refused here: its run says "no such file or directory"
            if src is not None and real == os.path.realpath(src) and mode_of(src) is not None:
                if given > 1 and suffix == ".rsc":   # `encode *` again: the earlier run's .rsc files
                    own.append(src)
                    continue
                terminal.usage(f"{src} would be overwritten by its own output; choose another -o")
            if key in seen:
                first, at = seen[key]
                if os.path.realpath(first) == os.path.realpath(src):   # one file given twice: done once
                    continue
                where = dst if os.path.realpath(at) == real else \
                    f"{at} and {dst}, one file where names ignore case"
                clashes.append(f"{first} and {src} would both be written to {where}")
                continue
            seen[key] = (src, dst)
        kept.append((src, dst))
    if own:
        terminal.note(own[0], f"{len(own)} .rsc input{'s' * (len(own) > 1)} left out: each would be "
                              "overwritten by its own output (an -o elsewhere codes them again)")
        if not kept:
            terminal.usage(f"{own[0]} would be overwritten by its own output; choose another -o")
    for src, dst in kept:   # an output where another's folder must be (a.png beside a.rsc/b.png)
        for up in [] if dst is None else Path(os.path.realpath(dst)).parents:   # real, as their child
            hit = seen.get(_clash_key(str(up), folders))
            if hit:
                clashes.append(f"{hit[0]} would be written to {up}, a folder {src}'s output needs")
                break
    if clashes:   # all of them at once, not one a run
        more = f" ({len(clashes) - 1} more such pair{'s' * (len(clashes) > 2)})" if len(clashes) > 1 else ""
        terminal.usage(f"{clashes[0]}{more}; rename one or give them separate -o folders")
    _check_folders(kept, folder)
    return kept, folder, _none_found(walked, other, passed, what), unlisted


def _check_folders(pairs, folder: Path | None) -> None:
    """A file where an output's folder should be (-o afile/sub), or a folder
    that cannot be written (read-only, no permission): said once, before the
    work, which would otherwise be done and then lost, file by file."""
    looked = set()
    for _, dst in pairs:
        # /dev/null's folder is not written, nor where the output is there already
        # (--skip-existing over a read-only archive writes nothing)
        if dst is None or dst.parent in looked or is_stream(dst) or os.path.lexists(dst):
            continue
        looked.add(dst.parent)
        p = dst.parent
        while mode_of(p) is None and p != p.parent:   # up to what is there
            p = p.parent
        if mode_of(p) is not None and not is_dir(p):
            where = folder if folder is not None and (p == folder or p in folder.parents) else dst
            terminal.fail(f"{where}: a file where the path needs a folder")
            sys.exit(1)
        if is_dir(p) and not os.access(p, os.W_OK | os.X_OK):
            try:
                why = "read-only file system" if os.statvfs(p).f_flag & os.ST_RDONLY else "permission denied"
            except (OSError, AttributeError):   # Windows has no statvfs
                why = "cannot be written"
            terminal.fail(f"{os.path.abspath(p) if str(p) == '.' else p}: {why}; nothing written")
            sys.exit(1)


def check_image_outputs(pairs, formats: dict = IMAGE_FORMATS) -> None:
    for _, dst in pairs:
        if dst is not None and not is_stream(dst) and dst.suffix.lower() not in formats:
            if not dst.suffix and dst.name.startswith(".") and dst.name.lower() in formats:
                terminal.usage(f"{dst}: the name is only an extension; give the file a name, e.g. "
                               f"photo{dst.name}")
            what = f"{dst.suffix} files" if dst.suffix else "a name without an extension"
            hint = ("; rescodec thumb -o NAME.avif writes the AVIF stored inside"
                    if dst.suffix.lower() == ".avif" else "")
            terminal.usage(f"{dst}: cannot write {what}; use {', '.join(formats)}{hint}")


def check_rsc_outputs(pairs) -> None:
    """encode's twin of check_image_outputs: with --force, an .rsc under a
    .jpg name would replace the photo.  A file -o is named .rsc: `-o out`
    would be a file with one input and a folder with two (`-o out/` is one)."""
    images = image_extensions()
    for _, dst in pairs:
        if dst is not None and dst.suffix.lower() in images:
            terminal.usage(f"{dst}: encode writes .rsc files, not {dst.suffix}; name the output .rsc "
                           "(rescodec decode writes images)")
        if dst is not None and dst.suffix.lower() != ".rsc" and not is_stream(dst):
            terminal.usage(f"{dst}: encode writes .rsc files; name the output "
                           f"{dst.parent / (dst.stem or dst.name)}.rsc, or end -o with / for a folder")

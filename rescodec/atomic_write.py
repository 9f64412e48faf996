"""Writing a file whole or not at all: through a temporary file in the same
folder, linked into place, so that a crash, a full disk or Ctrl-C never
leaves half a file, and an existing file is replaced only when asked."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mode_of(path: Path) -> int | None:
    """st_mode of what `path` names; None where nothing is there or the name
    cannot be looked up (too long): the read or write of that name then says
    why, as one line."""
    try:
        return path.stat().st_mode
    except OSError:
        return None


def is_stream(path: Path) -> bool:
    """A device or a pipe (-o /dev/null): written through, as it holds no file to lose."""
    mode = mode_of(path)
    return mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))


def is_dir(path: Path) -> bool:
    mode = mode_of(path)
    return mode is not None and stat.S_ISDIR(mode)


def exists_error(path: Path) -> OSError:
    if is_dir(path):   # --force replaces files, not folders
        return IsADirectoryError(errno.EISDIR, "a folder is there; --force replaces only files", str(path))
    return FileExistsError(f"{path} exists (use --force to overwrite)")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temp file in the same folder; without force, refuse to
    replace an existing file (os.link fails atomically if `path` exists).
    The file gets the mode a plain open() would give (0o666 & ~umask), not
    mkstemp's private 0o600.  The temp file's name is short, so that any name
    the file system takes can be written."""
    if is_stream(path):
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:   # named: the input's name would be put in front
            raise OSError(e.errno, e.strerror, str(path)) from None
        return
    if path.exists() and not force:
        raise exists_error(path)
    made = new_folders(path.parent)   # made here: removed again if the write fails
    try:
        _link_into_place(path, data, force)
    except BaseException:   # Ctrl-C included: nothing is left behind
        for folder in made:   # deepest first; one that got a file meanwhile stays
            try:
                os.rmdir(folder)
            except OSError:
                pass
        raise


def new_folders(folder: Path) -> list:
    """The folders of `folder`'s path that do not exist yet, deepest first."""
    new = []
    while folder != folder.parent and not os.path.lexists(folder):
        new.append(folder)
        folder = folder.parent
    return new


def _link_or_claim(tmp: str, path: Path) -> None:
    """`tmp` as `path`, which must not be there: a hard link fails atomically
    where it is.  Where the file system has no hard links (FAT and exFAT: SD
    cards, USB sticks; some network shares) the name is claimed with an
    exclusive create instead, and the whole file then put over the claim."""
    try:
        os.link(tmp, path)
        return
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))   # FileExistsError if there
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(path)   # our empty claim, never another's file
        raise


_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


def _link_into_place(path: Path, data: bytes, force: bool) -> None:
    """write_atomic's file: its folders made, a temp file written, linked as `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):   # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, "a file where the path needs a folder", str(path)) from None
    tmp = None
    try:
        # the pid: what a killed -j worker leaves, the parent finds (the batch's _end_pool)
        fd, tmp = tempfile.mkstemp(prefix=f".rescodec-{os.getpid()}-", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
        except (OSError, AttributeError):   # FAT and exFAT refuse modes they cannot store: the file keeps
            pass                             # the mount's; Windows has no fchmod
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _link_or_claim(tmp, path)
    except FileExistsError:   # os.link: the output appeared meanwhile
        raise exists_error(path) from None
    except OSError as e:      # errors name the output, not the temp file
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)

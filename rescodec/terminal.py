"""What the command line prints: one line per file, errors and notes on
stderr (`rescodec: error: ...`), and stdout written in full or not at all,
whose reader may leave (`| head`)."""
from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click


# control characters as escapes: a file named with a newline printed two lines
# for one file, and one with ESC could drive the terminal
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def shown(text: str) -> str:
    """Text for the terminal, one line: a file name that is not UTF-8
    (bad\\xff.png, which Python keeps as a lone surrogate) with its odd bytes
    written \\xff, as printing it would otherwise fail, and control
    characters written as escapes (\\n)."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:   # a lone surrogate that no file name gives
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROLS)


def echo(text: str, err: bool = False) -> None:
    click.echo(shown(text), err=err)


def print_out(text: str, err: bool = False) -> None:
    """Text of any length (a batch's --json) to stdout in full, or to stderr:
    a pipe whose reader leaves during a large write takes part of it without
    an error, and click.echo dropped the rest and went on to exit 0."""
    if err:
        click.echo(text, err=True)
        return
    sys.stdout.flush()
    write_stdout((text + "\n").encode())


def fail(msg: str) -> None:
    echo(f"rescodec: error: {msg}", err=True)


def note(name, msg: str) -> None:
    echo(f"rescodec: note: {name}: {msg}", err=True)


def problem(name, e: Exception) -> str:
    """One line for what went wrong with the input `name`: an OSError as the
    system names it ("missing.rsc: no such file or directory"), anything
    else with the name in front unless its message already has it."""
    name = str(name)
    if isinstance(e, OSError) and e.strerror:
        where = e.filename if e.filename not in (None, "") else name
        return f"{where}: {e.strerror[0].lower()}{e.strerror[1:]}"
    return str(e) if name in str(e) else f"{name}: {e}"


def usage(msg: str) -> None:
    """A mistake in the command line: one line, exit 2 (as click's own), nothing written."""
    fail(msg)
    sys.exit(2)


def display_name(path: Path | None, stream: str) -> str:
    return stream if path is None else str(path)


def write_stdout(data: bytes) -> None:
    """All of `data` to stdout, or an OSError naming <stdout>: a pipe whose
    reader left takes part of a write without an error, and the next write
    gets EPIPE ("broken pipe")."""
    try:
        out, view = sys.stdout.buffer, memoryview(data)
        while view:
            view = view[out.write(view):]
        out.flush()
    except OSError as e:
        raise stdout_failed(e) from None


def stdout_failed(e: OSError) -> OSError:
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
def stdout_errors():
    """Printing to stdout: a write that fails (/dev/full, a closed pipe) is one line and exit 1."""
    try:
        yield
    except OSError as e:
        leave_if_reader_left(e)
        fail(problem("<stdout>", stdout_failed(e)))
        sys.exit(1)


def leave_if_reader_left(e: OSError) -> None:
    """stdout's reader left (`| head`): exit 141 with no message, as a
    program that SIGPIPE ends (cat, cwebp), once the work in hand is cleaned
    up (SIGPIPE itself would end us at once, and orphan -j's workers)."""
    if e.errno == errno.EPIPE and e.filename in (None, "<stdout>"):
        stdout_failed(e)   # what is left in stdout's buffer goes nowhere
        sys.exit(141)


def debugging() -> bool:
    """RESCODEC_DEBUG set: let a bug's traceback through the command lines' last guards."""
    return bool(os.environ.get("RESCODEC_DEBUG"))


def internal_error(e: BaseException) -> str:
    """The one line a command line prints for a bug (anything not bad data)."""
    return f"internal error: {type(e).__name__}: {e} (set RESCODEC_DEBUG=1 for details)"

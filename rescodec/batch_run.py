"""Running a command over its files, in -j worker processes: one line per
file in input order, a summary, the exit status, and a clean stop on Ctrl-C
or SIGTERM (workers killed, their temporary files removed)."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from . import atomic_write, stop_signals, terminal
from .errors import RscError


def _init_worker(threads: int) -> None:
    for sig in stop_signals.STOP:   # a forked worker just ends; the parent says so
        if signal.getsignal(sig) is not signal.SIG_IGN:   # ignored (nohup, a background job): as the parent
            signal.signal(sig, signal.SIG_DFL)
    import torch
    torch.set_num_threads(threads)      # N workers x threads <= cores: no oversubscription


def _failure(name: str, e: Exception) -> tuple[str, bool]:
    """One line for a file that failed -> (the line, whether it is rescodec's
    own fault: a bug).  Whatever it is, the batch goes on to the next file."""
    from concurrent.futures import BrokenExecutor
    if isinstance(e, OSError):   # writing to stdout, whose reader left: the batch ends
        terminal.leave_if_reader_left(e)
    if isinstance(e, (RscError, ValueError, OSError)):
        return terminal.problem(name, e), False
    if isinstance(e, MemoryError):
        return f"{name}: out of memory", False
    if isinstance(e, BrokenExecutor):   # a worker was killed (the OOM killer): this file was not done
        return f"{name}: not done: a worker process ended abruptly (killed, perhaps for lack of memory)", False
    if terminal.debugging():
        raise e
    return f"{name}: internal error: {type(e).__name__}: {e}", True


def _end_pool(pool, pairs, kill: bool, new_folders=()) -> None:
    """Shut the workers down; kill: at once (a signal, or the pool broke), and
    remove the temporary files they were writing (atomic_write.write_atomic names them
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


def run_each(pairs, fn, kwargs: dict, **how) -> int:
    """run_batch, where a line that cannot be printed (stdout full or
    closed) is one error line and exit 1, after the files were written."""
    with terminal.stdout_errors():
        return run_batch(pairs, fn, kwargs, **how)


def run_batch(pairs, fn, kwargs: dict, *, as_json: bool = False, quiet: bool = False,
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
    unprintable = None   # stdout's OSError (a full disk, /dev/full): the files go on, their lines do not
    for k, e in enumerate(unlisted, -len(unlisted)):   # before the pairs' rows; not counted as files
        problem = terminal.problem(e.filename, e) + " (a folder; its files were skipped)"
        terminal.fail(problem)
        rows[k] = {"input": str(e.filename), "error": problem}
    if not pairs:
        if as_json:   # still JSON: a list of no files
            terminal.print_out(json.dumps(list(rows.values()), indent=1) if rows else "[]")
        terminal.fail(none_found)
        return 1
    from concurrent.futures import BrokenExecutor
    from tqdm import tqdm
    # a bar with an ETA for batches on a terminal; lines go above it
    bar = tqdm(total=len(pairs), unit="file", leave=False,
               disable=quiet or len(pairs) < 2 or not sys.stderr.isatty())

    def report(i, get) -> None:
        nonlocal internal, broken, unprintable
        src, dst = pairs[i]
        name = terminal.display_name(src, "<stdin>")
        try:
            row, notices = get()
        except Exception as e:   # any: one file's failure must not end the batch
            broken |= isinstance(e, BrokenExecutor)
            problem, ours = _failure(name, e)
            internal |= ours
            bar.clear()
            terminal.fail(problem)
            rows[i] = {"input": name, "output": terminal.display_name(dst, "<stdout>"), "error": problem}
            return
        finally:
            bar.update(1)
        bar.clear()
        details = row.pop("details", [])
        if not quiet:
            for n in notices:
                terminal.note(name, n)
        line = row.pop("line")
        rows[i] = {**row, "notes": list(notices)} if notices else row   # --json: what stderr says too
        if not as_json and not quiet and unprintable is None:
            try:
                terminal.echo(line, err=to_err)
                if verbose:
                    for d in details:
                        terminal.echo(f"  {d}", err=to_err)
            except OSError as e:
                terminal.leave_if_reader_left(e)   # `| head`: the batch ends, as cat's would
                unprintable = e
        bar.refresh()

    def skipped(src, dst):
        if src is not None:   # an input that is not there (a typo) fails, as without --skip-existing
            open(src, "rb").close()
        i, o = terminal.display_name(src, "<stdin>"), terminal.display_name(dst, "<stdout>")
        return {"input": i, "output": o, "skipped": "the output exists", "line": f"{i} -> {o}  skipped: it exists"}, []

    # an output that is there, a symlink that leads nowhere included; not a folder, which the run refuses
    skip = {i for i, (_, dst) in enumerate(pairs)
            if skip_existing and dst is not None and not atomic_write.is_stream(dst) and os.path.lexists(dst)
            and not atomic_write.is_dir(dst)}
    pool, futures, stop, ended, new_folders = None, {}, None, False, []
    try:
        try:
            if jobs > 1 and len(pairs) - len(skip) > 1:
                from concurrent.futures import ProcessPoolExecutor
                threads = threads or max(1, (os.cpu_count() or 1) // jobs)
                # the outputs' folders not there yet, deepest first: a killed worker may leave them empty
                new_folders = sorted({f for _, dst in pairs if dst is not None
                                      for f in atomic_write.new_folders(dst.parent)},
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
    except (KeyboardInterrupt, Terminated) as e:   # run() ignores a second signal meanwhile
        stop = e
        for i, f in futures.items():   # done while the parent waited on an earlier file
            if i not in rows and f.done() and not f.cancelled():
                if not isinstance(f.exception(), BrokenExecutor):
                    report(i, f.result)
    rows = [rows[i] for i in sorted(rows)]
    if unprintable is not None and stop is None:   # (a signal's summary goes to stderr)
        raise unprintable   # run_each: one line, exit 1, after the files were written
    if as_json:
        terminal.print_out(json.dumps(rows, indent=1), err=to_err)
    failed = sum("error" in r for r in rows) - len(unlisted)
    n_skipped = sum("skipped" in r for r in rows)
    done = len(rows) - len(unlisted) - failed - n_skipped
    if (len(pairs) > 1 or unlisted) and (failed or unlisted or stop or not quiet):
        where = "" if folder is None else f"; outputs in {folder}" if done else f"; nothing written to {folder}"
        left = f", {len(pairs) + len(unlisted) - len(rows)} not done" if stop else ""
        folders = f"; {len(unlisted)} folder{'s' * (len(unlisted) > 1)} not listed" if unlisted else ""
        passed = f", {n_skipped} skipped (their outputs exist)" if skip_existing else ""
        terminal.echo(f"{done} of {len(pairs)} files done{passed}, {failed} failed{left}{folders}{where}",
                      err=bool(failed or unlisted or stop) or to_err or as_json)   # --json: stdout holds the JSON alone
    if stop is not None:
        raise stop
    return 3 if internal else 1 if failed or unlisted else 0


class Terminated(BaseException):
    """SIGTERM, or SIGHUP (the terminal closed), raised where the program is,
    so that cleanup runs on the way out (as for Ctrl-C); args: the signal."""


def _stopping() -> None:
    """After the first SIGINT, SIGTERM or SIGHUP, the next are ignored: a
    second one broke off the cleanup of the first (the -j workers' end: it hung)."""
    for sig in stop_signals.STOP:
        signal.signal(sig, signal.SIG_IGN)


def on_sigterm(signum, frame) -> None:
    _stopping()
    raise Terminated(signum)


def on_sigint(signum, frame) -> None:
    _stopping()
    raise KeyboardInterrupt

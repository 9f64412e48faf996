"""The `rescodec` command line: encode, decode, thumb, info, models, compare,
bench, export and train.

Every file gets one line (stdout, or stderr when stdout carries the data of
`-o -`); every problem one line on stderr (`rescodec: error: ...`) and a
non-zero exit.  Outputs are written to a temporary file and linked into place,
so they are never half-written and an existing file is never replaced without
--force.

Only light modules are imported here: codec and refine pull in torch, so
each command imports them when it runs, and `rescodec --help` stays quick.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import click

# none of these imports torch
from . import (__version__, atomic_write, batch_plan, batch_run, container, image_output, settings, stop_signals,
               terminal)
from .batch_plan import STDIO
from .container import MAX_PIXELS
from .image_output import THUMB_FORMATS
from .errors import NotRscError, RscError, WeightsError

SCALE_CHOICES = click.Choice([str(s) for s in settings.SCALES])


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
        terminal.usage(f"--model {model!r} is not installed; `rescodec models` lists those that are")


def _write(dst: Path | None, data: bytes, force: bool) -> None:
    """dst None: stdout."""
    if dst is None:
        terminal.write_stdout(data)
    else:
        atomic_write.write_atomic(dst, data, force)


def _read_rsc(src: Path | None, max_pixels: int) -> bytes:
    """An .rsc input (src None: stdin) in bounded memory: its magic and size
    are checked before the rest is read (container.read)."""
    if src is None:
        return container.read(sys.stdin.buffer, max_pixels)
    with open(src, "rb") as f:
        try:
            return container.read(f, max_pixels)
        except NotRscError:
            from .image_folders import IMAGE_SUFFIXES
            if src.suffix.lower() in IMAGE_SUFFIXES:   # decode photo.png: the wrong command
                raise NotRscError("not an .rsc file but an image; to encode it: rescodec encode") from None
            raise


def _read_rsc_to(src: Path | None, dst: Path | None, force: bool, max_pixels: int) -> bytes:
    """decode's and thumb's input, read where its output is free: stdin's
    output is checked before stdin is read, which it cannot be again; a
    file's after, so that a PNG given to decode is said to be one."""
    if src is None:
        _check_free(dst, force)
        return _read_rsc(None, max_pixels)
    data = _read_rsc(src, max_pixels)
    _check_free(dst, force)
    return data


def _check_free(dst: Path | None, force: bool) -> None:
    """Fail before the work, not after it."""
    if dst is not None and dst.exists() and not force and not atomic_write.is_stream(dst):
        raise atomic_write.exists_error(dst)


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB" if n >= 1000 else f"{n} B"


def _section_names(sections: dict, scale: int) -> dict:
    """An x1 file's mask section holds the head's gain map: named so."""
    return {("gain map" if k == "mask" and scale == 1 else k): v for k, v in sections.items()}


def _sections(sizes: dict, scale: int) -> str:
    return ", ".join(f"{k} {_kb(v)}" for k, v in _section_names(sizes, scale).items())


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
            bar, stage_now = tqdm(total=total, desc=terminal.shown(f"{what}: {stage}"), unit="tile", leave=False,
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
                    desc=terminal.shown(f"refine {src.name if src else 'stdin'}"), unit="it", leave=False,
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
    i, o = terminal.display_name(src, "<stdin>"), terminal.display_name(dst, "<stdout>")
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
    t0 = time.perf_counter()
    data = _read_rsc_to(src, dst, force, max_pixels)
    d = codec.info(data, max_pixels=max_pixels)
    image_output.check_fits(dst, d["width"], d["height"])
    with _tile_bar(bar, f"decode {src.name if src else 'stdin'}"):
        img = codec.decode(data, max_pixels=max_pixels, temperature=temperature, seed=seed, fast=fast)
    notices = []
    _write(dst, image_output.image_bytes(img, dst, notices, quality), force)
    mode = image_output.written_mode(img, dst)
    dt = time.perf_counter() - t0
    sizes = {k: v["bytes"] for k, v in d["sections"].items()}
    i, o = terminal.display_name(src, "<stdin>"), terminal.display_name(dst, "<stdout>")
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
    from . import codec, decoder
    data = _read_rsc_to(src, dst, force, max_pixels)
    hd = decoder.unpack(data, max_pixels).header   # the model's name found by its hash
    lr_height, lr_width = hd.lr_size
    avif = dst is not None and not atomic_write.is_stream(dst) and dst.suffix.lower() == ".avif"
    if avif:   # the AVIF as stored, not coded again
        out, alpha = codec.thumbnail_avif(data, max_pixels=max_pixels)
    else:
        image_output.check_fits(dst, lr_width, lr_height)
        img, alpha = codec.thumbnail_image(data, max_pixels=max_pixels)
    notices = ["the small picture has no alpha channel: left out"] if alpha else []
    if avif and codec.grey_with_icc(data, max_pixels):
        notices.append("AVIF keeps the grey small picture as RGB, which the grey ICC profile "
                       "does not describe: left out")
    if avif and quality is not None:
        notices.append("-q changes nothing for .avif: the stored AVIF is written as it is")
    _write(dst, out if avif else image_output.image_bytes(img, dst, notices, quality), force)
    i, o = terminal.display_name(src, "<stdin>"), terminal.display_name(dst, "<stdout>")
    kind = "the photo at full size" if hd.scale == 1 else f"1/{hd.scale} of {hd.width}x{hd.height}"
    return ({"input": i, "output": o, "width": lr_width, "height": lr_height,
             "line": f"{i} -> {o}  {lr_width}x{lr_height} small picture",
             "details": [f"{kind}, model {hd.model}"]}, notices)


def _check_flags(quiet: bool, verbose: bool, force: bool, skip_existing: bool) -> None:
    for a, b, both in (("--quiet", "--verbose", quiet and verbose),
                       ("--force", "--skip-existing", force and skip_existing)):
        if both:
            terminal.usage(f"{a} and {b} cannot be used together")


def _stdout_open(ctx, param, value):
    """-o - needs a stdout: started with it closed (>&-), Python has none."""
    if value == STDIO and sys.stdout is None:
        terminal.fail("<stdout>: closed; -o - has nowhere to write")
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


@main.command(short_help="Encode images into .rsc files.")
@click.argument("inputs", nargs=-1, required=True)
@_output_options
@_MAX_PIXELS
@click.option("-q", "--quality", type=click.IntRange(0, 100), default=None,
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
              help="How the small picture inside the file is stored: avif (lossy, smaller; the "
                   "default at x1-x4) or lossless (bigger files; the default at x8 and x16).")
@click.option("--lr-quality", type=int, default=None,
              help="AVIF quality of the small picture (default: from -q).")
@click.option("--speed", "lr_speed", type=int, default=None, metavar="0-10",
              help="AVIF encoder speed for the small picture, 0 (slowest, smallest files) to 10 "
                   "(fastest). Default 3, 4 for -q 86-100 (the full-size photo at AVIF quality 61+), and 0 "
                   "with --refine; "
                   "4 encodes about twice as fast for about 1 percent more bytes at the same "
                   "quality. Decoding does not change.")
@click.option("--lr-step", type=int, default=None,
              help="Lossless small picture: keep every Nth colour level; larger is smaller "
                   "and blurrier (default: the model's own).")
@click.option("--lr-space", type=click.Choice(settings.LR_SPACES), default=None,
              help="Lossless small picture: store colours as rgb, or ycc (fewer bytes). "
                   "Default: the model's own.")
@click.option("--bits", type=int, default=1, show_default=True,
              help="Edge mask detail: more levels keep edges crisper, at a few more bytes.")
@click.option("--threshold", type=float,
              default=None, help="Edge mask threshold, above 0 and below 65536, on the gradients of "
                                 "0-255 pixels: higher marks fewer edges, so the file is smaller "
                                 "(65535: none). Default: the model's own.")
@click.option("--norm", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="Edge mask: how edge strength is measured (rarely worth changing).")
@click.option("--refine", is_flag=True,
              help="Encode slowly for a better file at about the same size: codes the "
                   "small picture (or at x1 the photo) at AVIF speed 0, at x1 chooses the "
                   "restoration's strength per block (which -q 86-100 always do), and where -q "
                   "chose the scale (up to -q 57) writes a plain file of another scale instead "
                   "where that is better at the same size. A lossless small picture is tuned to the decoder.")
@click.option("--refine-iters", type=click.IntRange(1, 1000), default=None, metavar="N",
              help="Also tune the small picture to the decoder in N steps (implies --refine; "
                   "not at x1); slow, and at the same size rarely better. Default: none for an "
                   "AVIF small picture, the method's own for a lossless one.")
@click.option("--refine-method", type=click.Choice(settings.REFINE_METHODS),
              default=settings.EncodeSettings.refine_method, show_default=True,
              help="rd weighs bytes against sharpness; hcd changes the small picture less.")
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
        resolved = None if st.is_target else st.resolved()   # a bad option or missing model: before any file
        if st.is_target:
            st.target_scales()
    except WeightsError as e:       # a model is missing: not a usage error
        terminal.fail(str(e))
        sys.exit(1)
    except ValueError as e:         # an option out of range: settings.validate says which
        terminal.fail(str(e))
        sys.exit(2)
    if device == "cuda" and resolved is not None and resolved.refine_steps:   # a descent will run: on what?
        import torch
        if not torch.cuda.is_available():
            terminal.usage("--device cuda, but torch sees no CUDA device; use --device cpu or auto")
    pairs, folder, none_found, unlisted = batch_plan.plan(inputs, output, ".rsc", batch_plan.readable_extensions())
    batch_plan.check_rsc_outputs(pairs)
    work = dict(force=force, st=st, bar=jobs == 1 and not quiet and not as_json, max_pixels=max_pixels,
                print_psnr=print_psnr)
    sys.exit(batch_run.run_each(pairs, _encode_file, work, as_json=as_json, quiet=quiet, verbose=verbose,
                                folder=folder, jobs=jobs, threads=threads, skip_existing=skip_existing,
                                none_found=none_found, unlisted=unlisted))


@main.command(short_help="Decode .rsc files to PNG, JPEG, WebP, TIFF or BMP.")
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
        terminal.fail(str(e))
        sys.exit(2)
    pairs, folder, none_found, unlisted = batch_plan.plan(inputs, output, ".decoded.png", {".rsc"}, ".rsc files")
    batch_plan.check_image_outputs(pairs)
    work = dict(force=force, max_pixels=max_pixels, temperature=temperature, seed=seed, fast=fast,
                quality=quality, bar=jobs == 1 and not quiet and not as_json)
    sys.exit(batch_run.run_each(pairs, _decode_file, work, as_json=as_json, quiet=quiet, verbose=verbose,
                                folder=folder, jobs=jobs, threads=threads, skip_existing=skip_existing,
                                none_found=none_found, unlisted=unlisted))


@main.command(short_help="Save the small picture inside .rsc files.")
@click.argument("inputs", nargs=-1, required=True)
@_output_options
@_MAX_PIXELS
@_OUTPUT_QUALITY
def thumb(inputs, output, force, skip_existing, as_json, quiet, verbose, max_pixels, quality):
    """Save the small picture stored inside .rsc files (NAME.rsc -> NAME.thumb.png),
    without decoding them: fast.  -o NAME.ext picks the format as for decode;
    -o NAME.avif writes the stored AVIF itself, not coded again."""
    _check_flags(quiet, verbose, force, skip_existing)
    pairs, folder, none_found, unlisted = batch_plan.plan(inputs, output, ".thumb.png", {".rsc"}, ".rsc files")
    batch_plan.check_image_outputs(pairs, THUMB_FORMATS)
    sys.exit(batch_run.run_each(pairs, _thumb_file, dict(force=force, max_pixels=max_pixels, quality=quality),
                                as_json=as_json, quiet=quiet, verbose=verbose, folder=folder,
                                skip_existing=skip_existing, none_found=none_found, unlisted=unlisted))


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print as JSON: an object, or for several files a list of them, each with its "
                   "\"file\", and \"error\" where it failed.")
@click.option("--check", is_flag=True,
              help="Also decode every section but run no network (the small picture, the mask, alpha, "
                   "metadata) and find the model installed: a damaged file fails, as decode would, "
                   "in a fraction of its time.")
@_MAX_PIXELS
def info(files, as_json, max_pixels, check):
    """Show .rsc files' header fields, section sizes and bpp."""
    from . import codec
    if "" in files:   # Path("") is the current folder
        terminal.usage("an empty name")
    if STDIO in files and len(files) > 1:
        terminal.usage("- (stdin) must be the only input")
    rows, failed, shown = [], False, 0   # --json's rows of several files; files shown
    with terminal.stdout_errors():
        for file in files:
            name = "<stdin>" if file == STDIO else file
            try:
                data = _read_rsc(None if file == STDIO else Path(file), max_pixels)
                d = codec.info(data, max_pixels=max_pixels)
                if check:
                    codec.check(data, max_pixels=max_pixels)
                    d["check"] = "ok"   # every section decodes and the model is installed
            except (RscError, OSError) as e:   # said, and the other files still shown
                problem = terminal.problem(name, e)
                terminal.fail(problem)
                failed = True
                rows.append({"file": name, "error": problem})
                if as_json and len(files) == 1:   # JSON still: a script reads the error there
                    terminal.print_out(json.dumps(rows[0], indent=1))
                continue
            if len(files) == 1:
                _print_info({"file": name, **d} if as_json else d, as_json)
            elif as_json:
                rows.append({"file": name, **d})
            else:   # as head(1) heads several files
                if shown:
                    click.echo()
                terminal.echo(f"==> {name} <==")
                _print_info(d, as_json)
            shown += 1
        if as_json and len(files) > 1:
            terminal.print_out(json.dumps(rows, indent=1))
    sys.exit(1 if failed else 0)


def _print_info(d: dict, as_json: bool) -> None:
    if as_json:
        terminal.print_out(json.dumps(d, indent=1))
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


@main.command(short_help="List the installed models.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models(as_json):
    """List the installed models: scale, how the small picture is stored, file
    size, training time, validation results and what the encoder uses each for."""
    from . import weights
    try:
        entries, folder = weights.manifest(), weights.weights_dir()
    except (RscError, OSError) as e:
        terminal.fail(str(e))
        sys.exit(1)
    if not entries:
        terminal.fail(f"no models installed in {folder}")
        sys.exit(1)
    try:
        with terminal.stdout_errors():
            _list_models(entries, folder, as_json)
    except (TypeError, ValueError, AttributeError, KeyError) as e:   # a manifest edited by hand
        terminal.fail(f"{folder / 'manifest.json'}: a malformed entry ({type(e).__name__}: {e})")
        sys.exit(1)


def _list_models(entries: dict, folder: Path, as_json: bool) -> None:
    from . import weights
    problems = []
    uses = weights.used_for(problems)
    for p in problems:   # what encode would refuse
        terminal.note(folder / "manifest.json", p)
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
        terminal.print_out(json.dumps(rows, indent=1))
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


@main.command(short_help="Compare with JPEG, WebP and AVIF at the same size.")
@click.argument("photo")
@click.option("-q", "--quality", "qualities", type=click.IntRange(0, 100), multiple=True,
              help=f"rescodec quality; may be given several times (default {settings.DEFAULT_QUALITY}).")
@click.option("-s", "--scale", type=SCALE_CHOICES, default=None, help="Force rescodec's scale.")
@click.option("--model", default=None,
              help="Use this installed model (`rescodec models`); -q is then its small picture's quality.")
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
        terminal.usage("an empty name" + (" after --save" if save == "" else ""))
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
        terminal.fail(terminal.problem(terminal.display_name(src, "<stdin>"), e))
        sys.exit(1)
    except ValueError as e:     # an option out of range: settings.validate says which
        terminal.fail(str(e))
        sys.exit(2)
    for n in notices:
        terminal.note(terminal.display_name(src, "<stdin>"), n)
    terminal.print_out(json.dumps(_finite(rows), indent=1) if as_json else format_table(rows))


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
        terminal.fail(f"{command} needs the bench extras ({', '.join(m.split('.')[0] for m in missing)}): "
                      f"pip install 'rescodec[bench]' (in a checkout: pip install -e '.[bench]')")
        sys.exit(1)


def _finite(rows: list) -> list:
    """JSON has no NaN or Infinity: null for SSIM too small to measure, or PSNR of an exact copy."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
            for r in rows]


@main.command(short_help="Rate-distortion over a folder, with BD-rates.")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for points.csv, summary.md/json and rd.png.")
@click.option("-f", "--force", is_flag=True, help="Replace the files of an earlier run in --out.")
def bench(folder, out, force):
    """Rate-distortion over a folder: rescodec's whole quality range against AVIF,
    Lanczos + AVIF, WebP and JPEG; CSV, plot, PSNR at fixed sizes, BD-rates."""
    _need_bench_extras("bench", ("skimage.metrics", "matplotlib"))
    from .evaluation.compare import BENCH_FILES, bench as run_bench
    from .image_folders import list_images
    try:
        for name in BENCH_FILES:   # before the work, which takes minutes
            _check_free(Path(out) / name, force)
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file where --out or a folder above it should be
        terminal.fail(terminal.problem(str(out), e))
        sys.exit(1)
    written = {os.path.realpath(Path(out) / name) for name in BENCH_FILES}   # an --out inside FOLDER
    paths = [p for p in list_images([folder]) if os.path.realpath(p) not in written]
    if not paths:
        terminal.fail(f"{folder}: no images found")
        sys.exit(1)
    summary = run_bench(paths, Path(out))
    from .evaluation.compare import summary_markdown
    terminal.print_out(summary_markdown(summary))
    click.echo(f"wrote {out}/{', '.join(summary['written'])}")
    sys.exit(1 if summary["failed"] else 0)


@main.command("export", short_help="Install a trained run as a model.")
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
        terminal.fail(str(err))
        sys.exit(1)
    val = e.get("validation")
    click.echo(f"exported {name}: {e['file']} sha256 {e['sha256'][:16]}..."
               + (f" val {val['bpp']} bpp {val['psnr_rgb']} dB ({val['images']} images)" if val else ""))


@main.command(short_help="Train a model.", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def train(ctx):
    """Train a model (see `rescodec train --help`; same as python -m rescodec.training)."""
    from .training.train import main as train_main
    sys.exit(train_main(ctx.args, prog="rescodec train"))


_OUTPUT_ERRNOS = (errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF)


def run() -> None:
    """Console entry point: no traceback reaches a user unless RESCODEC_DEBUG is set."""
    signal.signal(signal.SIGTERM, batch_run.on_sigterm)
    if stop_signals.HANGUP and signal.getsignal(stop_signals.HANGUP) is not signal.SIG_IGN:   # ignored: nohup
        signal.signal(stop_signals.HANGUP, batch_run.on_sigterm)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # ignored: started in the background
        signal.signal(signal.SIGINT, batch_run.on_sigint)
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:   # `rescodec` alone (click 8.2+): the help
        click.echo(e.ctx.get_help(), err=True)
        sys.exit(e.exit_code)
    except click.UsageError as e:      # click's own usage errors: one line, as rescodec's
        hint = f"; see '{e.ctx.command_path} --help'" if e.ctx else ""
        terminal.fail(" ".join(e.format_message().split()).rstrip(".") + hint)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt, _Interrupted):
        terminal.fail("interrupted")
        sys.exit(130)
    except batch_run.Terminated as e:
        signum = e.args[0] if e.args else signal.SIGTERM
        terminal.fail("hung up" if signum == stop_signals.HANGUP else "terminated")
        sys.exit(128 + signum)
    except SystemExit:
        if isinstance(sys.stdout, click.utils.PacifyFlushWrapper):   # click's own exit 1 on a broken
            sys.exit(141)                                            # pipe (--help, compare): as ours
        raise
    except Exception as e:  # the last guard: one line, not a traceback
        if isinstance(e, OSError) and e.filename in (None, "<stdout>") and e.errno in _OUTPUT_ERRNOS:
            terminal.leave_if_reader_left(e)   # printing (the help, --json): a file's error names the file
            terminal.fail(terminal.problem("<stdout>", terminal.stdout_failed(e)))
            sys.exit(1)
        if terminal.debugging():
            raise
        terminal.fail(terminal.internal_error(e))
        sys.exit(3)


if __name__ == "__main__":
    run()

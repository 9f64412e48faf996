"""The `rescodec` command line: encode, decode, info, train.

Every file gets one line on stdout; every problem one line on stderr
(`rescodec: error: ...`) and a non-zero exit.  Outputs are written to a
temporary file and linked into place, so they are never half-written and an
existing file is never replaced without --force.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from . import codec, container, refine, settings
from .errors import RscError

SCALE_CHOICES = click.Choice([str(s) for s in settings.SCALES])


def _fail(msg: str) -> None:
    click.echo(f"rescodec: error: {msg}", err=True)


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temp file in the same folder; without force, refuse to
    replace an existing file (os.link fails atomically if `path` exists)."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
            os.unlink(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _outputs(inputs, out: str | None, suffix: str, wanted: set):
    """Pair each input with its output path.  A folder input expands to the
    files below it (suffixes in `wanted`), mirrored under -o when given.
    With several inputs, or any folder, -o is a folder."""
    pairs = []
    many = len(inputs) > 1 or any(Path(p).is_dir() for p in inputs)
    o = Path(out) if out else None
    for p in map(Path, inputs):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in wanted)
            for f in files:
                rel = f.relative_to(p)
                dst_dir = (o / p.name / rel.parent) if o else f.parent
                pairs.append((f, dst_dir / (f.stem + suffix)))
        elif o is None:
            pairs.append((p, p.with_name(p.stem + suffix)))
        elif many or o.is_dir() or out.endswith(("/", os.sep)):
            pairs.append((p, o / (p.stem + suffix)))
        else:
            pairs.append((p, o))
    return pairs


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB" if n >= 1000 else f"{n} B"


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)      # N workers x threads <= cores: no oversubscription


def _run_each(pairs, fn, kwargs: dict, as_json: bool, jobs: int = 1) -> int:
    """Run fn(src, dst, **kwargs) per pair, in `jobs` processes; one line per
    file (in input order), one error line per failure, a summary for batches."""
    failed, rows = 0, []
    if jobs > 1 and len(pairs) > 1:
        from concurrent.futures import ProcessPoolExecutor
        threads = max(1, (os.cpu_count() or 1) // jobs)
        pool = ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(threads,))
        futures = [pool.submit(fn, src, dst, **kwargs) for src, dst in pairs]
        results = [f.result for f in futures]
    else:
        pool = None
        results = [lambda src=src, dst=dst: fn(src, dst, **kwargs) for src, dst in pairs]
    from tqdm import tqdm
    # a bar with an ETA for batches on a terminal; lines go above it
    bar = tqdm(total=len(pairs), unit="file", leave=False,
               disable=len(pairs) < 2 or not sys.stderr.isatty())
    try:
        for (src, _), get in zip(pairs, results):
            try:
                row, notices = get()
            except (RscError, ValueError, OSError) as e:
                failed += 1
                bar.clear()
                _fail(f"{src}: {e}" if str(src) not in str(e) else str(e))
                continue
            finally:
                bar.update(1)
            bar.clear()
            for n in notices:
                click.echo(f"rescodec: note: {src}: {n}", err=True)
            rows.append(row)
            if not as_json:
                click.echo(row.pop("line"))
            bar.refresh()
    finally:
        bar.close()
        if pool is not None:
            # wait=True: shutting down without waiting leaves the pool's wake-up pipe
            # to an exit hook that can find it closed and print a traceback (seen in CI,
            # Python 3.11). Ctrl-C reaches the workers too, so this does not hang.
            pool.shutdown(wait=True, cancel_futures=True)
    if as_json:
        for r in rows:
            r.pop("line", None)
        click.echo(json.dumps(rows, indent=1))
    if len(pairs) > 1:
        click.echo(f"{len(pairs) - failed} of {len(pairs)} files done, {failed} failed",
                   err=bool(failed))
    if not pairs:
        _fail("no input files found")
        return 1
    return 1 if failed else 0


def _encode_file(src: Path, dst: Path, force: bool, st: settings.EncodeSettings, bar: bool):
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists (use --force to overwrite)")
    progress, pbar = None, None
    if st.refine and bar:
        from tqdm import tqdm
        pbar = tqdm(total=refine.steps_of(st.refine_method, st.refine),
                    desc=f"refine {src.name}", unit="it", leave=False)

        def progress(i, n, db):
            pbar.n = i
            pbar.set_postfix_str(f"{db:.2f} dB")
            pbar.refresh()
    try:
        enc = codec.encode_ex(src, st, progress=progress)
    finally:
        if pbar is not None:
            pbar.close()
    write_atomic(dst, enc.data, force)
    px = enc.header.width * enc.header.height
    bpp = 8 * len(enc.data) / px
    return ({"input": str(src), "output": str(dst), "bytes": len(enc.data), "bpp": bpp,
             "scale": enc.header.scale, "seconds": enc.seconds, "sections": enc.sizes,
             "line": f"{src} -> {dst}  {_kb(len(enc.data))}  {bpp:.3f} bpp (whole file)  "
                     f"(x{enc.header.scale}, {enc.seconds:.2f} s)"}, enc.notices)


def _decode_file(src: Path, dst: Path, force: bool, max_pixels: int):
    import io
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists (use --force to overwrite)")
    t0 = time.perf_counter()
    img = codec.decode(src.read_bytes(), max_pixels=max_pixels)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    write_atomic(dst, buf.getvalue(), force)
    dt = time.perf_counter() - t0
    return ({"input": str(src), "output": str(dst), "width": img.width, "height": img.height,
             "mode": img.mode, "seconds": dt,
             "line": f"{src} -> {dst}  {img.width}x{img.height} {img.mode}  ({dt:.2f} s)"}, [])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rescodec")
def main():
    """rescodec: an image codec built on an invertible rescaling flow."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-q", "--quality", type=click.IntRange(0, 100), default=None,
              help=f"0-100: higher is bigger and better (default {settings.DEFAULT_QUALITY}). "
                   "Picks the scale and the thumbnail's AVIF quality.")
@click.option("--bpp", type=click.FloatRange(0, 64, min_open=True, max_open=True), default=None,
              help="Aim at this many bits per pixel (whole file); the scale and quality are "
                   "chosen per image.")
@click.option("--size", "size_", type=click.IntRange(1), default=None,
              help="Aim at this many bytes (whole file); as --bpp.")
@click.option("-s", "--scale", type=SCALE_CHOICES, default=None,
              help="Force the downscale factor per side (default: chosen by quality).")
@click.option("-o", "--output", help="Output file, or folder for several inputs.")
@click.option("--bits", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Boundary mask bits (Table 4 of BDFlow).")
@click.option("--threshold", type=click.FloatRange(0, 65536, min_open=True, max_open=True),
              default=None, help="Edge-mask threshold on the 0..255 Sobel scale: higher marks "
                                 "fewer edges, so the file is smaller. Default: the model's own "
                                 "(`rescodec info` shows it).")
@click.option("--norm", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="Gradient magnitude norm.")
@click.option("--temperature", type=click.FloatRange(0, settings.MAX_TEMPERATURE),
              default=codec.DEFAULT_TEMPERATURE, show_default=True,
              help="Z temperature at decode; the shipped models need 0 (see BENCHMARKS.md).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=codec.DEFAULT_SEED,
              show_default=True, help="Seed of Z, stored in the file.")
@click.option("--model", help="A registered model name (default: the scale's default).")
@click.option("--lr-codec", type=click.Choice(settings.LR_CODECS), default=None,
              help="How the thumbnail is stored: avif (lossy, the default) or lossless "
                   "(the papers' protocol; larger files).")
@click.option("--lr-quality", type=click.IntRange(0, 100), default=None,
              help="AVIF quality of the thumbnail itself (default: from -q).")
@click.option("--lr-step", type=click.IntRange(1, settings.MAX_LR_STEP), default=None,
              help="LR quantiser step: 1 stores the 8-bit LR, larger steps fewer levels "
                   "(smaller files, lower PSNR). Default: the model's own.")
@click.option("--lr-space", type=click.Choice(settings.LR_SPACES), default=None,
              help="Colour space of the stored LR codes: rgb, or ycc (YCbCr, fewer bytes). "
                   "Default: the model's own.")
@click.option("--refine", "iters", type=click.IntRange(-1, 1000), default=0, is_flag=False,
              flag_value=-1, show_default=True,
              help="Refine the LR against the decoder: iterations (HCD: per phase); "
                   "--refine alone means the method's default (rd 40, hcd 10), 0 = off.")
@click.option("--refine-method", type=click.Choice(settings.REFINE_METHODS), default=refine.DEFAULT_METHOD,
              show_default=True,
              help="rd: rate-distortion descent on the LR; hcd: HCD (Algorithm 1 of the "
                   "paper), smaller changes to the LR.")
@click.option("--device", type=click.Choice(settings.DEVICES), default="auto",
              show_default=True, help="Where --refine runs.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; torch threads are split between them.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def encode(inputs, quality, bpp, size_, scale, output, bits, threshold, norm, temperature, seed,
           model, lr_codec, lr_quality, lr_step, lr_space, iters, refine_method, device, jobs, force,
           as_json):
    """Encode images (PNG, JPEG, TIFF, ...) or folders of them into .rsc files."""
    from .training.train import IMAGE_SUFFIXES
    if iters == -1:     # --refine alone
        iters = refine.RD_ITERS if refine_method == "rd" else refine.DEFAULT_ITERS
    try:
        st = settings.EncodeSettings(
            scale=int(scale) if scale else None, quality=quality, bpp=bpp, size=size_, bits=bits,
            threshold=threshold, norm=int(norm), temperature=temperature, seed=seed, model=model,
            refine=iters, refine_method=refine_method, device=device, lr_codec=lr_codec,
            lr_quality=lr_quality, lr_step=lr_step, lr_space=lr_space)
        st = st.validate() if st.is_target else st.resolved()
    except (RscError, ValueError) as e:
        _fail(str(e))
        sys.exit(1)
    pairs = _outputs(inputs, output, ".rsc", IMAGE_SUFFIXES)
    sys.exit(_run_each(pairs, _encode_file, dict(force=force, st=st, bar=jobs == 1), as_json, jobs))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image, or folder for several inputs.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--max-pixels", type=click.IntRange(1), default=container.MAX_PIXELS,
              show_default=True, help="Refuse files of more pixels (decompression-bomb guard).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; torch threads are split between them.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def decode(inputs, output, force, max_pixels, jobs, as_json):
    """Decode .rsc files, or folders of them, to PNG (NAME.rsc -> NAME.decoded.png)."""
    pairs = _outputs(inputs, output, ".decoded.png", {".rsc"})
    sys.exit(_run_each(pairs, _decode_file, dict(force=force, max_pixels=max_pixels),
                       as_json, jobs))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--max-pixels", type=click.IntRange(1), default=container.MAX_PIXELS,
              show_default=True, help="Refuse files of more pixels.")
def info(file, as_json, max_pixels):
    """Show a .rsc file's header fields, section sizes and bpp."""
    try:
        data = Path(file).read_bytes()
        d = codec.info(data, max_pixels=max_pixels)
    except (RscError, OSError) as e:
        _fail(f"{file}: {e}" if file not in str(e) else str(e))
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    sections = d.pop("sections")
    for k, v in d.items():
        click.echo(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    for k, v in sections.items():
        click.echo(f"section {k:16s} {v['bytes']:8d} B  {100 * v['share']:5.1f} %")


@main.command()
@click.argument("photo")
@click.option("-s", "--scale", "scales", type=SCALE_CHOICES, multiple=True,
              help="Scale(s) to compare at; may be given several times (default 16).")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
@click.option("--save", type=click.Path(file_okay=False), help="Write labelled PNG strips here.")
def compare(photo, scales, as_json, save):
    """Compare rescodec with JPEG, WebP and AVIF at the same size, and bicubic."""
    from .evaluation.compare import compare as run_compare, format_table
    try:
        rows = run_compare(photo, [int(s) for s in scales] or [16], save=save,
                           name=Path(photo).stem)
    except (RscError, OSError) as e:
        _fail(f"{photo}: {e}" if str(photo) not in str(e) else str(e))
        sys.exit(1)
    click.echo(json.dumps(rows, indent=1) if as_json else format_table(rows))


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-s", "--scale", "scales", type=SCALE_CHOICES, multiple=True,
              help="Scales to run; may be given several times (default all four).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for points.csv, summary.md/json and rd.png.")
def bench(folder, scales, out):
    """Rate-distortion over a folder: CSV, RD plot, per-scale means and BD-rates."""
    from .evaluation.compare import bench as run_bench
    from .training.train import list_images
    paths = list_images([folder])
    if not paths:
        _fail(f"{folder}: no images found")
        sys.exit(1)
    summary = run_bench(paths, [int(s) for s in scales] or [2, 4, 8, 16], Path(out))
    from .evaluation.compare import summary_markdown
    click.echo(summary_markdown(summary))
    click.echo(f"wrote {out}/points.csv, summary.md, summary.json, rd.png")
    sys.exit(1 if summary["failed"] else 0)


@main.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("name")
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False),
              help="Validation images; their PSNR and bpp go into the manifest.")
@click.option("--data-note", default="", help="Training data description for the manifest.")
@click.option("--default/--no-default", "make_default", default=True, show_default=True,
              help="Make NAME the default model of its scale.")
def export_cmd(run, name, val_dir, data_note, make_default):
    """Export RUN/checkpoint.pt into the weights folder as model NAME."""
    from .training.train import export_run
    e = export_run(Path(run), name, Path(val_dir) if val_dir else None, data_note, make_default)
    click.echo(f"exported {name}: {e['file']} sha256 {e['sha256'][:16]}... "
               f"val {e.get('validation', {})}")


@main.command(add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def train(ctx):
    """Train a model (see `rescodec train --help`; same as python -m rescodec.training)."""
    from .training.train import main as train_main
    sys.exit(train_main(ctx.args))


def run() -> None:
    """Console entry point: no traceback reaches a user unless RESCODEC_DEBUG is set."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        _fail("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # the last guard: one line, not a traceback
        if os.environ.get("RESCODEC_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (set RESCODEC_DEBUG=1 for details)")
        sys.exit(3)


if __name__ == "__main__":
    run()

"""`rescodec compare` (one photo) and `rescodec bench` (a folder): rescodec
against JPEG, WebP, full-size AVIF 4:4:4 and "Lanczos down s + AVIF + Lanczos
up" (s = 2, 4) at the same file size; bench over rescodec's whole -q range.

PSNR is on RGB over the whole image with no border crop (what a user sees),
Y-PSNR as the papers report it; SSIM from scikit-image.  bpp counts whole files.
"""
from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import baselines, rd
from .. import codec, weights
from ..container import MAX_PIXELS
from ..images import load
from ..settings import EncodeSettings
from .baselines import Coded
from .metrics import psnr, psnr_y, ssim


BASELINES = baselines.CODECS + ("lanczos2+AVIF", "lanczos4+AVIF")
BENCH_QUALITIES = tuple(range(0, 101, 10))   # rescodec's -q over its whole range


def _rescodec(rgb: np.ndarray, settings: EncodeSettings,
              max_pixels: int = MAX_PIXELS) -> tuple[Coded, codec.Encoded]:
    t = time.perf_counter()
    enc = codec.encode_ex(rgb, settings, max_pixels=max_pixels)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    out, _, _ = codec.decode_array(enc.data, max_pixels=max_pixels)
    h = enc.header
    return Coded("rescodec", _label(settings),
                 len(enc.data), out, t_enc, time.perf_counter() - t, f"x{h.scale}"), enc


def _row(rgb: np.ndarray, c: Coded, ref: Coded | None) -> dict:
    px = rgb.shape[0] * rgb.shape[1]
    r = {"codec": c.codec, "setting": c.setting, "bytes": c.nbytes, "bpp": 8 * c.nbytes / px,
         "psnr": psnr(rgb, c.decoded), "psnr_y": psnr_y(rgb, c.decoded),
         "ssim": ssim(rgb, c.decoded), "encode_s": c.encode_s, "decode_s": c.decode_s,
         "note": c.note}
    if ref is not None:
        r["size_ratio"] = c.nbytes / ref.nbytes
        r["dpsnr"] = 0.0 if c is ref else float("nan")   # a baseline's: compare(), at ref's exact size
    return r


def _label(st: EncodeSettings) -> str:
    """A setting's name in compare's rows and strips: q=75, a target, or the scale."""
    if st.quality is not None:
        return f"q={st.quality}"
    if st.is_target:
        return f"bpp={st.bpp:g}" if st.bpp is not None else f"size={st.size}"
    return f"x{st.resolved().scale}"


def compare(image, settings=(EncodeSettings(),), save: Path | None = None,
            name: str = "photo", notices: list | None = None, force: bool = False,
            max_pixels: int = MAX_PIXELS) -> list[dict]:
    """Rows for each rescodec setting: rescodec, then each baseline's file no
    larger than it, with dPSNR, the baseline's PSNR at rescodec's exact size
    (baselines.psnr_at_size) less rescodec's, an exact decode as 100 dB; on
    the colour alone (an alpha channel gets a line in `notices`).
    `save`: a folder for the strips, where an existing file is replaced only
    with `force` (else FileExistsError, before any work)."""
    settings = list(dict.fromkeys(settings))   # -q 20 -q 20: one row, one strip
    stems = {st: Path(save) / _strip_stem(name, st) for st in settings} if save is not None else {}
    if len(set(stems.values())) < len(stems):
        raise ValueError("two settings of the same name would write the same strip; compare them apart")
    for stem in stems.values() if not force else ():   # before the work, not after it
        for p in (_strip_path(stem), _strip_path(stem, "temperature")):
            if p.exists():
                raise FileExistsError(f"{p} exists (use --force to overwrite)")
    pic = load(image, max_pixels)
    rgb = pic.rgb
    if notices is not None:   # as encode says them: frames left out, 16 bits reduced, ...
        notices += pic.notices
    if pic.alpha is not None and notices is not None:
        notices.append("the alpha channel is left out: every codec here codes the colour alone")
    rows = []
    codecs = [c for c in BASELINES if not baselines.cannot_code(c, rgb.shape)]
    for c in BASELINES:
        if c not in codecs and notices is not None:
            notices.append(f"{c} left out: {baselines.cannot_code(c, rgb.shape)}")
    for st in settings:
        ours, enc = _rescodec(rgb, st, max_pixels)
        coded = [ours] + [baselines.matched(rgb, c, ours.nbytes) for c in codecs]
        rows += [_row(rgb, c, ours) for c in coded]
        for c, r in zip(coded[1:], rows[-len(codecs):]):   # dPSNR at rescodec's own size (nan: not bracketed)
            theirs = baselines.psnr_at_size(rgb, c.codec, c, ours.nbytes)
            r["dpsnr"] = float(np.minimum(theirs, rd.EXACT_PSNR) - min(rows[-len(coded)]["psnr"], rd.EXACT_PSNR))
        if save is not None:
            save_strip(rgb, coded, _strip_path(stems[st]))
            if weights.card(enc.header.model).trained_temperature > 0:   # a texture model
                save_temperature_strip(rgb, enc.data, _strip_path(stems[st], "temperature"),
                                       max_pixels=max_pixels)
    return rows


def _strip_stem(name: str, st: EncodeSettings) -> str:
    """A strip's name: the photo's, the setting's, and any scale or model
    asked for, so that -q 20 and -q 20 -s 4 do not meet."""
    return "_".join([name, _label(st).replace("=", "")] + ([f"x{st.scale}"] if st.scale else [])
                    + ([st.model] if st.model else []))


def _strip_path(stem: Path, kind: str = "") -> Path:
    """compare's strips: NAME_q75.png, and NAME_q75_temperature.png for a texture model."""
    return stem.with_name(f"{stem.name}_{kind}.png" if kind else f"{stem.name}.png")


def save_strip(rgb: np.ndarray, coded, path: Path, crop: int = 384) -> None:
    """Original and decodes side by side, labelled; a centre crop for large photos."""
    tiles = [(f"{c.codec} {c.setting} {c.nbytes} B {psnr(rgb, c.decoded):.2f} dB", c.decoded)
             for c in coded]
    _strip([("original", rgb)] + tiles, path, crop)


def save_temperature_strip(rgb: np.ndarray, data: bytes, path: Path, crop: int = 160,
                           zoom: int = 2, max_pixels: int = MAX_PIXELS) -> None:
    """The same crop decoded at Z temperature 0, the file's own and 1, next to
    the original, enlarged `zoom` times (pixel for pixel) so the drawn texture shows."""
    tiles = [("original", rgb)]
    own, _, hd = codec.decode_array(data, max_pixels=max_pixels)
    for t in sorted({0.0, hd.z_temperature, 1.0}):
        out = own if t == hd.z_temperature else codec.decode_array(data, max_pixels, temperature=t)[0]
        label = f"t = {t:.2g}" + (" (file's)" if t == hd.z_temperature else "")
        tiles.append((f"{label} {psnr(rgb, out):.2f} dB", out))
    _strip(tiles, path, crop, zoom)


def _wrap(label: str, width: float, draw) -> list:
    """The label's words in lines no wider than `width` pixels (a longer word alone)."""
    lines = []
    for word in label.split():
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


def _strip(tiles, path: Path, crop: int, zoom: int = 1) -> None:
    """Labelled images side by side: the same centre crop of each, enlarged `zoom` times."""
    h, w = tiles[0][1].shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    tw = cw * zoom
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [_wrap(label, tw - 6, measure) for label, _ in tiles]   # a narrow crop's labels ran into
    label_h = 12 * max(map(len, lines)) + 6                          # the next tile's
    strip = Image.new("RGB", (tw * len(tiles), ch * zoom + label_h), "white")
    draw = ImageDraw.Draw(strip)
    for i, ((_, img), text) in enumerate(zip(tiles, lines)):
        tile = Image.fromarray(np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]))
        strip.paste(tile.resize((tw, ch * zoom), Image.NEAREST), (i * tw, label_h))
        draw.multiline_text((i * tw + 3, 3), "\n".join(text), fill="black", spacing=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)


def format_table(rows: list[dict]) -> str:
    head = (f"{'codec':14} {'setting':8} {'bytes':>8} {'bpp':>7} {'PSNR':>6} {'PSNR-Y':>6} "
            f"{'SSIM':>6} {'enc s':>6} {'dec s':>6} {'size/rsc':>8} {'dPSNR':>6}")
    out = [head]
    for r in rows:
        out.append(f"{r['codec']:14} {r['setting']:8} {r['bytes']:>8} "
                   f"{r['bpp']:>7.4f} {r['psnr']:>6.2f} {r['psnr_y']:>6.2f} {r['ssim']:>6.4f} "
                   f"{r['encode_s']:>6.2f} {r['decode_s']:>6.2f} {r['size_ratio']:>8.3f} "
                   + (f"{r['dpsnr']:>+6.2f}" if np.isfinite(r["dpsnr"]) else f"{'-':>6}")
                   + (f"  ({r['note']})" if r["note"] else ""))
    return "\n".join(out)


BENCH_FILES = ("points.csv", "summary.md", "summary.json", "rd.png")   # what bench writes in `out`


def bench(paths, out: Path, qualities=BENCH_QUALITIES, progress=True) -> dict:
    """Every image x (rescodec at each -q + every baseline over its range) ->
    points.csv, rd.png, summary.md / .json in `out` (rd.summarise: mean PSNR
    at fixed bpps, rescodec's margins, BD-rates over stated ranges).
    Unreadable files are reported and skipped."""
    from tqdm import tqdm
    out.mkdir(parents=True, exist_ok=True)
    per_image, failed = {}, []
    bar = tqdm(paths, desc="bench", unit="img", disable=not progress)
    for p in bar:
        try:
            rgb = load(p).rgb
        except (ValueError, OSError) as e:   # RscError; a file gone or unreadable
            failed.append(str(p))
            said = str(e)   # ImageInputError names the file already
            bar.write(f"rescodec: skipped {said if said.startswith(str(p)) else f'{p}: {said}'}", file=sys.stderr)
            continue
        pts = rd.baseline_points(rgb)
        for q in qualities:
            c = _rescodec(rgb, EncodeSettings(quality=q))[0]
            pts.append({"codec": "rescodec", "setting": q, "bpp": 8 * c.nbytes / (rgb.shape[0] * rgb.shape[1]),
                        "psnr": psnr(rgb, c.decoded)})
        per_image[str(p)] = pts
    rows = [{"image": k, **p} for k, pts in per_image.items() for p in pts]
    written = []
    if rows:
        with open(out / "points.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        plot(rows, out / "rd.png")
        written += ["points.csv", "rd.png"]
    else:   # an earlier run's would contradict the summary below
        for name in ("points.csv", "rd.png"):
            (out / name).unlink(missing_ok=True)
    summary = rd.summarise(per_image) if per_image else {"images": 0}
    summary["failed"] = failed
    (out / "summary.md").write_text(summary_markdown(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    summary["written"] = written + ["summary.md", "summary.json"]
    return summary


def summary_markdown(summary: dict) -> str:
    text = rd.markdown(summary) if summary.get("images") else "no images\n"
    if summary.get("failed"):
        text += "\nSkipped (unreadable): " + ", ".join(summary["failed"]) + "\n"
    return text


def plot(points: list[dict], path: Path) -> None:
    """Mean bpp and PSNR per codec and setting, log bpp."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    styles = {"rescodec": "D-", "AVIF": "^-", "AVIF-psnr": "^:", "WEBP": "s-", "JPEG": "o-",
              "lanczos2+AVIF": "v--", "lanczos4+AVIF": "<--", "lanczos2+AVIF-psnr": "v:",
              "lanczos4+AVIF-psnr": "<:"}
    for c, style in styles.items():
        keys = sorted({p["setting"] for p in points if p["codec"] == c})
        xs, ys = [], []
        for k in keys:
            sel = [p for p in points if p["codec"] == c and p["setting"] == k]
            xs.append(statistics.mean(p["bpp"] for p in sel))
            ys.append(statistics.mean(min(p["psnr"], rd.EXACT_PSNR) for p in sel))
        if xs:
            ax.plot(xs, ys, style, label=c)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (whole file, log scale)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("Rate-distortion, mean over images per setting")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

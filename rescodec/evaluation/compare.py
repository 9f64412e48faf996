"""`rescodec compare` (one photo) and `rescodec bench` (a folder): rescodec
against JPEG, WebP and AVIF at the same file size, and the bicubic baseline.

PSNR is on RGB over the whole image with no border crop (what a user sees),
Y-PSNR as the papers report it; SSIM from scikit-image.  bpp counts whole files.
"""
from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import baselines
from .. import codec
from .baselines import Coded
from ..images import load
from .metrics import bd_psnr, bd_rate, psnr, psnr_y, ssim

SWEEP = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)   # qualities for the RD curves


def _rescodec(rgb: np.ndarray, scale: int) -> Coded:
    t = time.perf_counter()
    data = codec.encode(rgb, scale)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    out, _, _ = codec.decode_array(data)
    return Coded("rescodec", f"x{scale}", len(data), out, enc, time.perf_counter() - t)


def _row(rgb: np.ndarray, c: Coded, ref: Coded | None) -> dict:
    px = rgb.shape[0] * rgb.shape[1]
    r = {"codec": c.codec, "setting": c.setting, "bytes": c.nbytes, "bpp": 8 * c.nbytes / px,
         "psnr": psnr(rgb, c.decoded), "psnr_y": psnr_y(rgb, c.decoded),
         "ssim": ssim(rgb, c.decoded), "encode_s": c.encode_s, "decode_s": c.decode_s,
         "note": c.note}
    if ref is not None:
        r["size_ratio"] = c.nbytes / ref.nbytes
        r["dpsnr"] = r["psnr"] - psnr(rgb, ref.decoded)
    return r


def compare(image, scales=(16,), save: Path | None = None, name: str = "photo") -> list[dict]:
    """Rows for each scale: rescodec, JPEG/WebP/AVIF no larger than it, bicubic."""
    rgb = load(image).rgb
    rows = []
    for s in scales:
        ours = _rescodec(rgb, s)
        coded = [ours] + [baselines.matched(rgb, c, ours.nbytes) for c in baselines.CODECS]
        coded.append(baselines.bicubic(rgb, s))
        rows += [{"scale": s, **_row(rgb, c, ours)} for c in coded]
        if save is not None:
            save_strip(rgb, coded, Path(save) / f"{name}_x{s}.png")
    return rows


def save_strip(rgb: np.ndarray, coded, path: Path, crop: int = 384) -> None:
    """Original and decodes side by side, labelled; a centre crop for large photos."""
    h, w = rgb.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    tiles = [("original", rgb)] + [(f"{c.codec} {c.setting} {c.nbytes} B "
                                     f"{psnr(rgb, c.decoded):.2f} dB", c.decoded) for c in coded]
    label_h = 18
    strip = Image.new("RGB", (cw * len(tiles), ch + label_h), "white")
    draw = ImageDraw.Draw(strip)
    for i, (label, img) in enumerate(tiles):
        strip.paste(Image.fromarray(np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw])), (i * cw, label_h))
        draw.text((i * cw + 3, 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)


def format_table(rows: list[dict]) -> str:
    head = (f"{'scale':>5}  {'codec':9} {'setting':8} {'bytes':>8} {'bpp':>7} {'PSNR':>6} {'PSNR-Y':>6} "
            f"{'SSIM':>6} {'enc s':>6} {'dec s':>6} {'size/rsc':>8} {'dPSNR':>6}")
    out = [head]
    for r in rows:
        out.append(f"{'x' + str(r['scale']):>5}  {r['codec']:9} {r['setting']:8} {r['bytes']:>8} "
                   f"{r['bpp']:>7.4f} {r['psnr']:>6.2f} {r['psnr_y']:>6.2f} {r['ssim']:>6.4f} "
                   f"{r['encode_s']:>6.2f} {r['decode_s']:>6.2f} {r['size_ratio']:>8.3f} "
                   f"{r['dpsnr']:>+6.2f}" + (f"  ({r['note']})" if r["note"] else ""))
    return "\n".join(out)


def _sweep(rgb: np.ndarray, codec_name: str) -> list[dict]:
    out = []
    for q in SWEEP:
        t = time.perf_counter()
        data = baselines.encode_at(rgb, codec_name, q)
        enc = time.perf_counter() - t
        t = time.perf_counter()
        dec = baselines.decode_bytes(data)
        out.append(_row(rgb, Coded(codec_name, f"q={q}", len(data), dec, enc,
                                   time.perf_counter() - t), None))
    return out


def bench(paths, scales, out: Path, progress=True, log=print) -> dict:
    """Every image x (rescodec scales + JPEG/WebP/AVIF sweeps + bicubic) ->
    points.csv, rd.png, summary.md in `out`.  Unreadable files are reported
    and skipped.  Returns the summary numbers."""
    from tqdm import tqdm
    out.mkdir(parents=True, exist_ok=True)
    points, failed = [], []
    bar = tqdm(paths, desc="bench", unit="img", disable=not progress)
    for p in bar:
        try:
            rgb = load(p).rgb
        except ValueError as e:
            failed.append(str(p))
            bar.write(f"rescodec: skipped {p}: {e}")
            continue
        for s in scales:
            points.append({"image": str(p), "scale": s, **_row(rgb, _rescodec(rgb, s), None)})
            points.append({"image": str(p), "scale": s, **_row(rgb, baselines.bicubic(rgb, s), None)})
        for c in baselines.CODECS:
            points += [{"image": str(p), "scale": "", **r} for r in _sweep(rgb, c)]
    if points:
        with open(out / "points.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(points[0]))
            w.writeheader()
            w.writerows(points)
    summary = summarise(points, scales)
    summary["failed"] = failed
    (out / "summary.md").write_text(summary_markdown(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if points:
        plot(points, out / "rd.png")
    return summary


def summarise(points: list[dict], scales) -> dict:
    by_image: dict = {}
    for p in points:
        by_image.setdefault(p["image"], []).append(p)
    per_scale = []
    for s in scales:
        ours = [p for p in points if p["codec"] == "rescodec" and p["scale"] == s]
        bic = [p for p in points if p["codec"] == "bicubic" and p["scale"] == s]
        if ours:
            per_scale.append({"scale": s, "bpp": statistics.mean(p["bpp"] for p in ours),
                              "psnr": statistics.mean(p["psnr"] for p in ours),
                              "psnr_y": statistics.mean(p["psnr_y"] for p in ours),
                              "ssim": statistics.mean(p["ssim"] for p in ours),
                              "bicubic_psnr": statistics.mean(p["psnr"] for p in bic)})
    bd = {}
    for c in ("rescodec",) + baselines.CODECS[1:]:
        rates, dps = [], []
        for pts in by_image.values():
            ref = sorted((p["bpp"], p["psnr"]) for p in pts if p["codec"] == "JPEG")
            test = sorted((p["bpp"], p["psnr"]) for p in pts if p["codec"] == c)
            if len(ref) >= 2 and len(test) >= 2:
                r1, p1 = map(np.array, zip(*ref))
                r2, p2 = map(np.array, zip(*test))
                rates.append(bd_rate(r1, p1, r2, p2))
                dps.append(bd_psnr(r1, p1, r2, p2))
        good = [(r, d) for r, d in zip(rates, dps) if np.isfinite(r) and np.isfinite(d)]
        bd[c] = {"bd_rate_pct": statistics.mean(r for r, _ in good) if good else None,
                 "bd_psnr_db": statistics.mean(d for _, d in good) if good else None,
                 "images": len(good)}
    return {"per_scale": per_scale, "bd_vs_jpeg": bd}


def summary_markdown(summary: dict) -> str:
    lines = ["| scale | bpp | PSNR RGB | PSNR Y | SSIM | bicubic PSNR |", "|---|---|---|---|---|---|"]
    for r in summary["per_scale"]:
        lines.append(f"| x{r['scale']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['psnr_y']:.2f} "
                     f"| {r['ssim']:.4f} | {r['bicubic_psnr']:.2f} |")
    lines += ["", "| codec | BD-rate vs JPEG | BD-PSNR vs JPEG | images with overlap |",
              "|---|---|---|---|"]
    for c, v in summary["bd_vs_jpeg"].items():
        f = (lambda x, u: "n/a (no overlap)" if x is None else f"{x:+.2f} {u}")
        lines.append(f"| {c} | {f(v['bd_rate_pct'], '%')} | {f(v['bd_psnr_db'], 'dB')} | {v['images']} |")
    if summary.get("failed"):
        lines += ["", "Skipped (unreadable): " + ", ".join(summary["failed"])]
    return "\n".join(lines) + "\n"


def plot(points: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for c, style in (("JPEG", "o-"), ("WEBP", "s-"), ("AVIF", "^-"), ("rescodec", "D-"),
                     ("bicubic", "x--")):
        if c in baselines.CODECS:
            keys = sorted({p["setting"] for p in points if p["codec"] == c},
                          key=lambda k: int(k[2:]))
        else:
            keys = sorted({p["setting"] for p in points if p["codec"] == c},
                          key=lambda k: -int(k[1:]))
        xs, ys = [], []
        for k in keys:
            sel = [p for p in points if p["codec"] == c and p["setting"] == k]
            xs.append(statistics.mean(p["bpp"] for p in sel))
            ys.append(statistics.mean(p["psnr"] for p in sel))
        if xs:
            ax.plot(xs, ys, style, label=c)
            if c == "rescodec":
                for x, y, k in zip(xs, ys, keys):
                    ax.annotate(k, (x, y), textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (whole file, log scale)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("Rate-distortion, mean over images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Rate-distortion of rescodec's lossy-LR range against the codecs users have.

    python -m rescodec.evaluation.rd --data ../shared/datasets/val --out runs/rd

Per image: rescodec at every (scale, LR quality) given, full-size AVIF 4:4:4
(speed 4), "Lanczos down s + AVIF 4:4:4 + Lanczos up" for s = 2 and 4 (no
learning at all), WebP and JPEG, each over its quality range.  Whole-file
bpp, RGB PSNR.  Curves are compared per image at equal bpp (PSNR interpolated
in log-bpp on each curve's upper envelope), then averaged over the images
where both curves reach that bpp; BD-rates are per image over a stated bpp
range, then averaged.  rescodec's curve is the envelope of all its points of
that image, which is what a per-image choice of scale and quality can reach
(`rescodec bench` gives the encoder's own `-q` points instead).

    python -m rescodec.evaluation.rd --versus runs/a/points.json runs/b/points.json

compares two runs' rescodec curves per scale (b against a: BD-PSNR, BD-rate).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from . import baselines
from .. import codec
from ..images import load
from ..settings import EncodeSettings
from ..image_folders import list_images
from .metrics import _envelope, bd_psnr, bd_rate, psnr

AVIF_QUALITIES = tuple(range(0, 100, 10))
JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
LR_QUALITIES = tuple(range(0, 100, 10))
BPP_GRID = (0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


def baseline_points(rgb: np.ndarray) -> list[dict]:
    """Every baseline over its quality range: full-size AVIF 4:4:4 (speed 4),
    Lanczos down s + AVIF + Lanczos up (s = 2, 4), both also with AVIF tuned
    for PSNR as rescodec's LR is ("-psnr"), JPEG and WebP."""
    h, w = rgb.shape[:2]
    pts = []

    def add(name, setting, coding):   # a baseline that cannot code this picture is left out
        if not baselines.cannot_code(name, rgb.shape):
            n, out = coding()
            pts.append({"codec": name, "setting": setting, "bpp": 8 * n / (h * w), "psnr": psnr(rgb, out)})

    def coded(name, q):
        data = baselines.encode_at(rgb, name, q)
        return len(data), baselines.decode_bytes(data)

    for q in AVIF_QUALITIES:
        for avif in ("AVIF", "AVIF-psnr"):
            add(avif, q, lambda: coded(avif, q))
            for s in (2, 4):
                add(f"lanczos{s}+{avif}", q, lambda: baselines.lanczos_avif(rgb, s, q, avif))
    for q in JPEG_QUALITIES:
        add("JPEG", q, lambda: coded("JPEG", q))
        add("WEBP", q, lambda: coded("WEBP", q))
    return pts


def rescodec_points(rgb: np.ndarray, settings_list, nets=None, fast: bool = False) -> list[dict]:
    """settings_list: EncodeSettings to encode with; nets: {scale: network}
    to use instead of registered models (checkpoints); fast: decode without
    the restoration head (`rescodec decode --fast`)."""
    h, w = rgb.shape[:2]
    pts = []
    for st in settings_list:
        net = (nets or {}).get(st.scale)
        data = codec.encode_ex(rgb, st, net=net).data
        out = codec.decode_array(data, net=net, fast=fast)[0]
        pts.append({"codec": "rescodec", "setting": f"x{st.scale} q{st.lr_quality}",
                    "bpp": 8 * len(data) / (h * w), "psnr": psnr(rgb, out)})
    return pts


EXACT_PSNR = baselines.EXACT_PSNR   # where two codecs are exact they tie, and an exact
                                    # point does not make a curve infinite


def _curve(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """One codec's points of one image -> its upper envelope (bpp, PSNR)."""
    return _envelope(np.array([x["bpp"] for x in points], float),
                     np.minimum([x["psnr"] for x in points], EXACT_PSNR))


def psnr_at(points: list[dict], bpp: float) -> float:
    """PSNR of one image's curve at `bpp` (log-bpp interpolation on its
    envelope, flat past its last point up to the largest file, which it
    beats); nan below the smallest file and above the largest, and where the
    codec has no point (it cannot code the image)."""
    if not points:
        return float("nan")
    r, p = _curve(points)
    if bpp < r[0] or bpp > max(x["bpp"] for x in points):
        return float("nan")
    return float(np.interp(np.log(bpp), np.log(r), p))


MIN_OVERLAP = 0.5   # of ref's PSNR span in the range: a sliver of overlap says little about a curve


def bd_rate_in(ref: list[dict], test: list[dict], lo: float, hi: float) -> float:
    """Mean bitrate change (%) of test against ref at equal PSNR, over the PSNRs
    that ref reaches between lo and hi bpp and test reaches at all; nan where
    that overlap is under MIN_OVERLAP of ref's span there, or either codec has
    no point.  Both curves are piecewise-linear in log-rate, so the mean of
    their difference is integrated exactly, knot to knot."""
    if not ref or not test:
        return float("nan")
    r1, p1 = _curve(ref)
    r2, p2 = _curve(test)
    lo_p = np.interp(np.log(max(lo, r1[0])), np.log(r1), p1)
    hi_p = np.interp(np.log(min(hi, r1[-1])), np.log(r1), p1)
    a, b = max(lo_p, p2[0]), min(hi_p, p2[-1])
    if b <= a or b - a < MIN_OVERLAP * (hi_p - lo_p):
        return float("nan")
    ps = np.unique(np.concatenate(([a, b], p1[(p1 > a) & (p1 < b)], p2[(p2 > a) & (p2 < b)])))
    d = np.interp(ps, p2, np.log(r2)) - np.interp(ps, p1, np.log(r1))
    return float((np.exp(np.sum((d[1:] + d[:-1]) * np.diff(ps)) / 2 / (b - a)) - 1) * 100)


def summarise(per_image: dict) -> dict:
    """per_image: {image: [points]} -> mean PSNR per codec on BPP_GRID,
    margins of rescodec, BD-rates."""
    codecs = sorted({p["codec"] for pts in per_image.values() for p in pts})
    grid = {}
    for c in codecs:
        row = {}
        for b in BPP_GRID:
            vals = [psnr_at([p for p in pts if p["codec"] == c], b) for pts in per_image.values()]
            vals = [v for v in vals if np.isfinite(v)]
            row[b] = (statistics.mean(vals), len(vals)) if vals else (None, 0)
        grid[c] = row
    margins = {}
    for other in ("AVIF", "AVIF-psnr", "best lanczos+AVIF", "best lanczos+AVIF-psnr", "JPEG"):
        row = {}
        for b in BPP_GRID:
            diffs = []
            for pts in per_image.values():
                ours = psnr_at([p for p in pts if p["codec"] == "rescodec"], b)
                if other.startswith("best "):
                    avif = other.removeprefix("best lanczos+")
                    theirs = max((psnr_at([p for p in pts if p["codec"] == f"lanczos{s}+{avif}"], b)
                                  for s in (2, 4)), key=lambda v: -np.inf if np.isnan(v) else v)
                else:
                    theirs = psnr_at([p for p in pts if p["codec"] == other], b)
                if np.isfinite(ours) and np.isfinite(theirs):
                    diffs.append(ours - theirs)
            row[b] = (statistics.mean(diffs), len(diffs)) if diffs else (None, 0)
        margins[other] = row
    bd = {}
    for ref, lo, hi in (("AVIF", 0.03, 0.2), ("AVIF-psnr", 0.03, 0.2), ("AVIF", 0.2, 1.5),
                        ("AVIF-psnr", 0.2, 1.5), ("JPEG", 0.03, 1.5),
                        ("WEBP", 0.03, 1.5), ("lanczos2+AVIF", 0.03, 0.2), ("lanczos4+AVIF", 0.03, 0.2),
                        ("lanczos2+AVIF-psnr", 0.03, 0.2), ("lanczos4+AVIF-psnr", 0.03, 0.2)):
        for test in ("rescodec", "AVIF"):
            if test == ref:
                continue
            vals = [bd_rate_in([p for p in pts if p["codec"] == ref],
                               [p for p in pts if p["codec"] == test], lo, hi)
                    for pts in per_image.values()]
            vals = [v for v in vals if np.isfinite(v)]
            bd[f"{test} vs {ref}, {lo}-{hi} bpp"] = ((statistics.mean(vals), len(vals)) if vals
                                                     else (None, 0))
    return {"grid": grid, "margins": margins, "bd_rate": bd, "images": len(per_image)}


def markdown(summary: dict) -> str:
    def cell(v):
        return "-" if v[0] is None else f"{v[0]:.2f} ({v[1]})"

    def signed(v):
        return "-" if v[0] is None else f"{v[0]:+.2f} ({v[1]})"
    head = "| codec | " + " | ".join(f"{b}" for b in BPP_GRID) + " |"
    sep = "|---" * (len(BPP_GRID) + 1) + "|"
    out = [f"Mean RGB PSNR (dB) at each whole-file bpp (images reaching it), {summary['images']} images",
           "", head, sep]
    for c, row in summary["grid"].items():
        out.append(f"| {c} | " + " | ".join(cell(row[b]) for b in BPP_GRID) + " |")
    out += ["", "rescodec's margin (dB) at the same bpp", "", head.replace("codec", "against"), sep]
    for c, row in summary["margins"].items():
        out.append(f"| {c} | " + " | ".join(signed(row[b]) for b in BPP_GRID) + " |")
    out += ["", "| BD-rate | % (images) |", "|---|---|"]
    for k, v in summary["bd_rate"].items():
        out.append(f"| {k} | {signed(v)} |")
    return "\n".join(out) + "\n"


def setting_means(per_image: dict, codec_name: str = "rescodec") -> str:
    """Mean bpp and PSNR per setting of one codec, as a markdown table."""
    rows: dict = {}
    for pts in per_image.values():
        for p in pts:
            if p["codec"] == codec_name:
                rows.setdefault(p["setting"], []).append((p["bpp"], p["psnr"]))
    out = [f"| {codec_name} setting | mean bpp | mean PSNR | images |", "|---|---|---|---|"]
    for k, v in rows.items():
        out.append(f"| {k} | {statistics.mean(b for b, _ in v):.4f} | "
                   f"{statistics.mean(p for _, p in v):.2f} | {len(v)} |")
    return "\n".join(out) + "\n"


def versus(ref: dict, test: dict) -> str:
    """Two runs' points.json (the same photos: matched by path, else by file
    name where the names are unique): per scale, test's mean PSNR change at
    equal bpp (BD-PSNR) and its BD-rate against ref, per photo over the bpps
    both reach, then averaged.  Where test has one point a photo: its PSNR
    minus ref's curve at that bpp, per photo and averaged."""
    if not set(ref) & set(test):
        names = [[Path(k).name for k in d] for d in (ref, test)]
        if any(len(set(n)) < len(n) for n in names):
            raise SystemExit("the runs share no photo paths, and their file names are not unique")
        ref, test = ({Path(k).name: v for k, v in d.items()} for d in (ref, test))

    def curve(points, s):
        pts = [p for p in points if p["codec"] == "rescodec" and p["setting"].startswith(f"x{s} ")]
        return np.array([p["bpp"] for p in pts]), np.array([p["psnr"] for p in pts])
    scales = sorted({int(p["setting"].split()[0][1:]) for pts in ref.values()
                     for p in pts if p["codec"] == "rescodec"})
    out = ["| scale | BD-PSNR of test (dB) | BD-rate of test (%) | photos |", "|---|---|---|---|"]
    single = []     # test has one point a photo (e.g. one refined LR quality)
    for s in scales:
        rows, gaps = [], []
        for name in sorted(set(ref) & set(test)):
            (ra, pa), (rb, pb) = curve(ref[name], s), curve(test[name], s)
            if len(ra) > 1 and len(rb) > 1:
                rows.append((bd_psnr(ra, pa, rb, pb), bd_rate(ra, pa, rb, pb)))
            elif len(ra) > 1 and len(rb) == 1:
                o = np.argsort(ra)
                x = np.log(ra[o])
                inside = x[0] <= np.log(rb[0]) <= x[-1]
                gaps.append(pb[0] - np.interp(np.log(rb[0]), x, pa[o]) if inside else np.nan)
        rows = [r for r in rows if np.isfinite(r).all()]
        if rows:
            m = np.mean(rows, axis=0)
            out.append(f"| x{s} | {m[0]:+.3f} | {m[1]:+.2f} | {len(rows)} |")
        if gaps:
            inside = [g for g in gaps if np.isfinite(g)]
            single.append(f"| x{s} | {np.mean(inside) if inside else np.nan:+.3f} | "
                          + " ".join("-" if not np.isfinite(g) else f"{g:+.2f}" for g in gaps)
                          + f" | {len(inside)} of {len(gaps)} |")
    if single:      # PSNR over ref's curve at the test point's bpp, interpolated in log-bpp
        out += ["", "| scale | test minus ref at test's bpp (dB), mean | per photo (- : beyond ref's "
                "bpps) | photos |", "|---|---|---|---|"] + single
    return "\n".join(out)


def read_points(path: Path) -> dict:
    """A run's points.json, given the file or the run's folder."""
    return json.loads((path / "points.json" if path.is_dir() else path).read_text())


def main(argv=None) -> int:
    try:
        run(argv)
    except (OSError, ValueError) as e:   # RscError is a ValueError; json's errors too
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rescodec.evaluation.rd", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="folder of images")
    p.add_argument("--out", type=Path, help="folder for points.json and summary.md")
    p.add_argument("--versus", type=Path, nargs=2, metavar=("REF", "TEST"),
                   help="instead: compare two runs (folders or their points.json) per scale (BD-PSNR, BD-rate)")
    p.add_argument("--scale", type=int, action="append", help="scales (default 2 and 4)")
    p.add_argument("--model", action="append", default=[], help="SCALE=NAME, a registered model")
    p.add_argument("--checkpoint", action="append", default=[], help="a training checkpoint to use for its scale")
    p.add_argument("--qualities", default=",".join(map(str, LR_QUALITIES)), help="LR qualities")
    p.add_argument("--limit", type=int, default=0, help="first N images only")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--threshold", type=float, help="the mask threshold T (default: each model's own; "
                                                   "65535: an empty mask)")
    p.add_argument("--refine", type=int, nargs="?", const=True, default=0, metavar="N",
                   help="encode with --refine, or (N) with N descent steps (--refine-iters N)")
    p.add_argument("--speed", type=int, help="AVIF encoder speed of the LR (default: the encoder's)")
    p.add_argument("--no-baselines", action="store_true", help="rescodec's points only")
    p.add_argument("--fast", action="store_true", help="decode without the restoration head")
    p.add_argument("--temperature", type=float,
                   help="Z temperature (default: each model's own; 0 for a checkpoint)")
    a = p.parse_args(argv)
    if a.versus:
        print(versus(*(read_points(f) for f in a.versus)))
        return
    if a.data is None or a.out is None:
        p.error("--data and --out are required (or --versus REF TEST)")
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    from .. import weights
    nets, thr = {}, {}
    models = {int(k): v for k, v in (m.split("=") for m in a.model)}
    for name in models.values():
        weights.card(name)   # WeightsError before any work
    for c in a.checkpoint:
        net, state = weights.load_checkpoint(c)
        nets[net.config.scale] = net
        thr[net.config.scale] = float(state["train_config"]["mask_threshold"])
    quals = [int(q) for q in a.qualities.split(",")]
    settings = [EncodeSettings(scale=s, model=models.get(s), lr_codec="avif", lr_quality=q,
                               threshold=a.threshold or thr.get(s), lr_step=1, lr_space="rgb",
                               refine=a.refine, device="cpu", lr_speed=a.speed,
                               temperature=a.temperature if a.temperature is not None
                               else 0.0 if s in nets else None)
                for s in (a.scale or [2, 4]) for q in quals]
    paths = list_images([a.data])[: a.limit or None]
    a.out.mkdir(parents=True, exist_ok=True)
    per_image = {}
    for path in paths:
        rgb = load(path).rgb
        per_image[str(path)] = (([] if a.no_baselines else baseline_points(rgb))
                                + rescodec_points(rgb, settings, nets, a.fast))
        print(f"{path}: {len(per_image[str(path)])} points", flush=True)
    (a.out / "points.json").write_text(json.dumps(per_image, indent=1))
    md = (markdown(summarise(per_image)) + "\n" if not a.no_baselines else "") + setting_means(per_image)
    (a.out / "summary.md").write_text(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())

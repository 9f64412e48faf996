"""Benchmarks whose numbers go into BENCHMARKS.md and the README.

python -m rescodec.evaluation.benchmark ...
    speed [--data DIR] [--photo PNG] [--quality Q] [--speed S] [--refine [N]]  # encode/decode time of one photo, section bytes
    val [--data DIR] [--model NAME] [--refine [N]]          # val set: bpp, PSNR, SSIM vs JPEG and bicubic
    memory [--mp 24] [--refine [N]]                         # peak RSS and time of encode/decode at 1, 12, 24 MP
    checkpoints --checkpoint runs/x4/checkpoint.pt          # training checkpoints on val: PSNR, bpp, JPEG margin
    lr-codecs [--photos DIR] [--limit N]                    # lossy codecs for the LR: AVIF speeds, JPEG XL
    lr-cost --checkpoint PATH [--photos DIR] [--limit N]    # a flow LR's AVIF bytes and PSNR against Lanczos
    temperature [--quality Q] [--t T] [--model NAME] [--checkpoint PATH]  # val PSNR against the Z temperature
    gain-estimate [--photos DIR] [--quality Q]              # x1 gain maps chosen from the encoder's estimate of the head
    refine-gain [--photos DIR] [--quality Q] [--refine [N]]  # --refine against the plain files of every -q, at equal size
    graphics [--photos DIR] [--quality Q]                   # graphics (or DIR): the ladder's file, and the checks' file
    psnr-target [--photos DIR] [--psnr DB]                  # --psnr: the -q taken, the PSNR over the target, time
    thumbnails [--photos DIR]                               # the small picture per scale against a box downscale
    decoders --scale S --model A --model B [--photos DIR] --quality Q  # B's decode of A's files against A's

DIR defaults to $RESCODEC_DATA or ../shared/datasets; the val images are
DIR/val.  `--photo` is the image speed and val time (default: Set14's
768x512 photo, else scikit-image's coffee resized to 768x512).  `--scale`
limits speed, val and memory to those scales; `--threads` sets this process's
torch threads.  Each prints a markdown table; nothing here is a test
(tests/test_benchmark.py only checks that each runs).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import codec, encoder, head_gain, rate_control, tiling, weights
from ..images import load
from ..errors import RscError
from ..mask import MaskParams
from ..refine import DEFAULT_METHOD
from ..settings import REFINE_METHODS as METHODS, EncodeSettings
from ..image_folders import list_images
from .baselines import jpeg_at_bpp
from .baselines import bicubic_rescale
from .metrics import psnr, psnr_y, ssim

SCALES = (2, 4, 8, 16)
IRN_SET14_Y = {2: 40.79, 4: 32.67}   # IRN's published Set14 Y-PSNR (500k GPU steps)


def _data_dir(arg) -> Path:
    return Path(arg or os.environ.get("RESCODEC_DATA") or "../shared/datasets")


def _val_images(data: Path):
    paths = list_images([data / "val"])
    if not paths:
        raise SystemExit(f"no images under {data / 'val'}")
    return [(p, load(p)) for p in paths]


def _crop_to_scale(rgb: np.ndarray, s: int) -> np.ndarray:
    return rgb[:rgb.shape[0] // s * s, :rgb.shape[1] // s * s]


def _photo(data: Path, path: Path | None = None) -> np.ndarray:
    """The timing photo: `path`, else Set14's 768x512 photo, else a stand-in
    of the same size (scikit-image's CC0 coffee)."""
    p = path or data / "val" / "set14" / "img_011_SRF_4_HR.png"
    if path or p.exists():
        return load(p).rgb
    import skimage.data
    from PIL import Image
    return np.asarray(Image.fromarray(skimage.data.coffee()).resize((768, 512), Image.BICUBIC))


def cpu() -> str:
    """The CPU the times were taken on: times move 2x between machines of the
    same core count (BENCHMARKS.md, "Speed"), so each table names its own."""
    name, family = "unknown CPU", ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = re.search(r"^model name\s*:\s*(.+)$", info, re.M).group(1).strip()
        family = " (family {}, model {})".format(*(re.search(rf"^{k}\s*:\s*(\d+)$", info, re.M).group(1)
                                                   for k in ("cpu family", "model")))
    except (OSError, AttributeError):
        pass
    return f"{name}{family}, {os.cpu_count()} CPUs, {torch.backends.cpu.get_cpu_capability()}"


def _refine_flags(refine, method: str) -> str:
    """The encoder's flags for `refine` (True: --refine; N: N descent steps)."""
    return "--refine" if refine is True else f"--refine-iters {refine} --refine-method {method}"


def speed(data: Path, repeats: int = 3, scales=SCALES, refine: int = 0, method: str = DEFAULT_METHOD,
          photo: Path | None = None, qualities=(), lr_speeds=()) -> None:
    """Encode and decode time of the timing photo, best of `repeats`, per
    scale or (qualities given) per -q, and per AVIF speed of the LR where
    `lr_speeds` are given; `refine` > 0: encode with that refinement (one repeat)."""
    img = _photo(data, photo)
    repeats = 1 if refine else repeats
    print(f"CPU: {cpu()}; torch threads: {torch.get_num_threads()}, image {img.shape[1]}x{img.shape[0]}"
          + (f", {_refine_flags(refine, method)}" if refine else "") + "\n")
    print("| setting | encode s | decode s | total s | bytes | bpp | header B | LR B | mask B | mask share "
          "| decode --fast s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = ([(f"-q {q}", EncodeSettings(quality=q, refine=refine, refine_method=method, device="cpu"))
             for q in qualities] if qualities else
            [(f"x{s}", EncodeSettings(scale=s, refine=refine, refine_method=method, device="cpu"))
             for s in scales])
    if lr_speeds:
        rows = [(f"{label} --speed {v}", replace(st, lr_speed=v)) for label, st in rows for v in lr_speeds]
    for label, st in rows:
        codec.decode_array(codec.encode_ex(img, st).data)       # warm-up: weights load, allocator
        enc_t, dec_t, fast_t = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            e = codec.encode_ex(img, st)
            enc_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode_array(e.data)
            dec_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode_array(e.data, fast=True)
            fast_t.append(time.perf_counter() - t)
        n = len(e.data)
        ee, dd = min(enc_t), min(dec_t)
        print(f"| {label} | {ee:.3f} | {dd:.3f} | {ee + dd:.3f} | {n} | {8 * n / img.shape[0] / img.shape[1]:.4f} "
              f"| {e.sizes['header']} | {e.sizes['LR']} | {e.sizes['mask']} | {e.sizes['mask'] / n:.1%} | {min(fast_t):.3f} |",
              flush=True)


def val(data: Path, scales=SCALES, models=(), refine: int = 0, method: str = DEFAULT_METHOD,
        lam: float | None = None, bits: int = MaskParams.bits,
        threshold: float | None = None, lr_step: int | None = None,
        lr_space: str | None = None, photo: Path | None = None) -> None:
    """The per-scale table: params, decode time of the timing photo, bpp,
    PSNR RGB and Y, SSIM, JPEG at the same bpp, bicubic rescaling, and Set14
    Y-PSNR with IRN's protocol (Y of BT.601, `s` border pixels cropped) next
    to IRN's.
    `models`: registered names to measure instead of each scale's default;
    `refine`: encode with it (True: --refine; N: N descent steps of `method`,
    rd with rate weight `lam`, None = the scale's default, or hcd); `bits`, `threshold`: the
    mask's (Algorithm 1; threshold None: each model's own), for files made
    with other than the defaults;
    `lr_step`, `lr_space`: the LR quantiser's step and colour space (None:
    each model's own)."""
    items = _val_images(data)
    img = _photo(data, photo)
    print(f"{len(items)} images from {data / 'val'}; PSNR on RGB, whole image, no border crop"
          + (f"; encoded with {_refine_flags(refine, method)}"
             + (f", lambda {lam}" if lam is not None else "") if refine else "")
          + (f"; mask bits {bits}" if bits != MaskParams.bits else "")
          + (f"; mask threshold {threshold:g}" if threshold is not None else "")
          + (f"; LR step {lr_step}" if lr_step is not None else "")
          + (f"; LR space {lr_space}" if lr_space is not None else "") + "\n")
    print(f"| scale | model | params | decode s ({img.shape[1]}x{img.shape[0]}) | bpp | PSNR RGB | PSNR Y | SSIM "
          "| JPEG @ same bpp | bicubic rescale | mask share | Set14 Y, crop s (IRN) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    options = dict(lr_step=lr_step, lr_space=lr_space)
    times = []
    for name in models or [weights.default_model(s) for s in scales]:
        net = weights.load_model(name)
        s = net.config.scale
        rows, set14, enc_s = [], [], 0.0
        for path, pic in items:
            rgb = pic.rgb
            e = codec.encode_ex(rgb, EncodeSettings(
                scale=s, model=name, refine=refine, refine_method=method, refine_lambda=lam,
                bits=bits, threshold=threshold, **options))
            enc_s += e.seconds
            out, _, _ = codec.decode_array(e.data)
            bpp = 8 * len(e.data) / (rgb.shape[0] * rgb.shape[1])
            _, bic = bicubic_rescale(rgb, s)
            jp = jpeg_at_bpp(rgb, bpp)
            rows.append((bpp, psnr(rgb, out), psnr_y(rgb, out), ssim(rgb, out),
                         jp["psnr"], psnr(rgb, bic), e.sizes["mask"] / len(e.data),
                         jp["clamped"] == "below quality 1"))
            if "set14" in str(path).lower():
                set14.append(psnr_y(rgb[s:-s, s:-s], out[s:-s, s:-s]))
        m = [statistics.mean(c) for c in zip(*rows)]
        n_low = sum(r[7] for r in rows)    # JPEG's quality 1 is larger than our file
        clamped = f" ({n_low} of {len(rows)} at q1, larger)" if n_low else ""
        params = sum(p.numel() for p in net.parameters())
        timed = codec.encode(img, s, model=name, **options)
        codec.decode_array(timed)                       # warm-up
        dec = []
        for _ in range(3):
            t = time.perf_counter()
            codec.decode_array(timed)
            dec.append(time.perf_counter() - t)
        irn = IRN_SET14_Y.get(s)
        print(f"| x{s} | {name} | {params / 1e6:.2f} M | {min(dec):.3f} | {m[0]:.3f} | {m[1]:.2f} "
              f"| {m[2]:.2f} | {m[3]:.4f} | {m[4]:.2f}{clamped} | {m[5]:.2f} | {m[6]:.1%} "
              f"| {statistics.mean(set14) if set14 else float('nan'):.2f}"
              f"{f' ({irn})' if irn else ''} |", flush=True)
        times.append(f"x{s} {enc_s / len(items):.1f} s")
    print("\nmean encode time per image (refinement included): " + ", ".join(times))


def checkpoints(data: Path, paths) -> None:
    """PSNR RGB / Y and SSIM of training checkpoints on val through the real
    codec (the run's own encoder settings, Z = 0), images cropped to a
    multiple of the scale; whole-file bpp and JPEG's PSNR at that bpp, so runs
    that trade bits for PSNR are compared by their margin."""
    from ..training.train import TrainConfig
    items = _val_images(data)
    print("| checkpoint | step | train CPU-min | LR step | mask T | bpp | PSNR RGB | PSNR Y | SSIM "
          "| JPEG @ same bpp | margin |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        net, state = weights.load_checkpoint(path)
        s = net.config.scale
        st = TrainConfig(**state["train_config"]).encode_settings(s)
        rows = []
        for _, pic in items:
            rgb = _crop_to_scale(pic.rgb, s)
            data = codec.encode_ex(rgb, st, net=net).data
            out = codec.decode_array(data, net=net)[0]
            bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
            rows.append((bpp, psnr(rgb, out), psnr_y(rgb, out), ssim(rgb, out),
                         jpeg_at_bpp(rgb, bpp)["psnr"]))
        m = [statistics.mean(c) for c in zip(*rows)]
        space = " ycc" if st.lr_space == "ycc" else ""
        print(f"| {path} | {state.get('step', '-')} | {state.get('cpu_s', 0) / 60:.1f} | {st.lr_step}{space} "
              f"| {st.threshold:g} | {m[0]:.3f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.4f} | {m[4]:.2f} "
              f"| {m[1] - m[4]:+.2f} |", flush=True)


def _rss_child(args) -> None:
    """Run in a fresh process: encode or decode one file, print peak RSS (MiB).
    VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child
    would report its parent's peak."""
    what, src, dst, settings, threads = args
    if threads:
        torch.set_num_threads(threads)
    if what == "encode":
        Path(dst).write_bytes(codec.encode_ex(src, EncodeSettings(**settings)).data)
    else:
        codec.decode_array(Path(src).read_bytes())
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print(int(hwm.split()[1]) / 1024)


def memory(sizes_mp=(1, 12, 24), qualities=(2, 25, 75), scales=(), refine: int = 0,
           method: str = DEFAULT_METHOD, threads: int = 0) -> None:
    """Peak RSS and time of encode and decode of synthetic photos (a CC0
    sample upscaled plus noise) at 1, 12 and 24 megapixels, each in a fresh
    process (so the times include starting Python and loading the model),
    per -q (default 2, 25 and 75: x4, x2 and x1) or, `scales` given, per
    -s; `refine` > 0 encodes with that refinement, `method` rd or hcd (tiled
    above refine.REFINE_WHOLE_MAX_PIXELS).  The decode makes pixels and
    writes no image file.  `threads`: torch's in each process (0: its default)."""
    import subprocess
    import sys
    import tempfile
    import skimage.data
    from PIL import Image
    extra = dict(refine=refine, refine_method=method, device="cpu") if refine else {}
    rows = ([(f"x{s}", dict(scale=s, **extra)) for s in scales] if scales else
            [(f"-q {q}", dict(quality=q, **extra)) for q in qualities])
    print(f"CPU: {cpu()}; torch threads: {threads or torch.get_num_threads()}"
          + (f", {_refine_flags(refine, method)}" if refine else "") + "\n")
    print("| megapixels | setting | encode s | encode peak RSS MiB | decode s | decode peak RSS MiB | bpp |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for mp in sizes_mp:
            w = int((mp * 1e6 * 1.5) ** 0.5)
            h = int(mp * 1e6 / w)
            base = Image.fromarray(skimage.data.coffee()).resize((w, h), Image.BICUBIC)
            noise = np.random.default_rng(0).integers(-6, 7, (h, w, 3))
            src = tmp / f"{mp}mp.png"
            Image.fromarray(np.clip(np.asarray(base) + noise, 0, 255).astype(np.uint8)).save(src)
            for label, settings in rows:
                dst = tmp / f"{mp}mp.rsc"
                res = []
                for what, a, b in (("encode", src, dst), ("decode", dst, None)):
                    t = time.perf_counter()
                    out = subprocess.run([sys.executable, "-c",
                                          "from rescodec.evaluation.benchmark import _rss_child; "
                                          f"_rss_child({(what, str(a), str(b), settings, threads)!r})"],
                                         capture_output=True, text=True, check=True)
                    res += [time.perf_counter() - t, float(out.stdout.split()[-1])]
                bpp = 8 * dst.stat().st_size / (w * h)
                print(f"| {w * h / 1e6:.1f} ({w}x{h}) | {label} | {res[0]:.1f} | {res[1]:.0f} | {res[2]:.1f} "
                      f"| {res[3]:.0f} | {bpp:.3f} |", flush=True)


def lr_codecs(folder: Path, scales=(2, 4), limit: int = 8) -> None:
    """Lossy codecs for the LR, on real flow LRs (the forward of the scale's
    default AVIF-LR model, 8-bit RGB) of the first `limit` photos in `folder`:
    AVIF 4:4:4 as files code it at speeds 3 (the default), 4, 6 and 8, speed 3
    with libaom's AB partitions pruned, and lossy JPEG XL (effort 7), each over its
    quality range; BD-rate of each against speed 3 on (bytes, PSNR of the LR),
    and the mean encode time per LR (the coders take turns on each LR, so a
    busy machine slows them alike)."""
    import imagecodecs
    from .. import lossy_lr
    from .metrics import bd_rate

    def avif(speed, prune_ab=None):
        def run(lr, q):
            data = lossy_lr.encode(lr, q, speed, prune_ab)
            return len(data), lossy_lr.decode(data, lr.shape)
        return run, range(0, 100, 10)

    def jxl(lr, d):
        data = imagecodecs.jpegxl_encode(lr, distance=d, effort=7)
        return len(data), imagecodecs.jpegxl_decode(data)
    ref = "AVIF speed 3"
    coders = {ref: avif(3), "AVIF speed 3, AB partitions pruned": avif(3, True), "AVIF speed 4": avif(4),
              "AVIF speed 6": avif(6), "AVIF speed 8": avif(8),
              "JPEG XL effort 7": (jxl, (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 25))}
    paths = list_images([folder])[:limit]
    print(f"| scale | LR codec | BD-rate vs {ref} | encode ms per LR | ({len(paths)} photos of {folder})")
    print("|---|---|---|---|")
    for s in scales:
        net = weights.load_model(weights.default_model(s, "avif", 50))
        curves = {name: [] for name in coders}
        seconds = dict.fromkeys(coders, 0.0)
        for path in paths:
            lr = lossy_lr.to_uint8(tiling.forward_y(net, tiling.pad(load(path).rgb, s)))[0]
            for name, (run, settings) in coders.items():
                t = time.perf_counter()
                rows = [run(lr, q) for q in settings]
                seconds[name] += time.perf_counter() - t
                curves[name].append(([8 * n / lr.size for n, _ in rows], [psnr(lr, dec) for _, dec in rows]))
        for name, (_, settings) in coders.items():
            rates = [bd_rate(np.array(r0), np.array(p0), np.array(r1), np.array(p1))
                     for (r0, p0), (r1, p1) in zip(curves[ref], curves[name])]
            rates = [r for r in rates if np.isfinite(r)]
            ms = 1000 * seconds[name] / (len(paths) * len(settings))
            print(f"| x{s} | {name} | {statistics.mean(rates):+.2f} % | {ms:.0f} |", flush=True)


def lr_cost(folder: Path, checkpoints, limit: int = 8, qualities=(10, 30, 50)) -> None:
    """What a flow LR costs AVIF, against a Lanczos LR of the same photo: at
    each AVIF quality, the LR's bytes and the PSNR of the reconstruction
    (the flow's inverse from the AVIF-decoded flow LR, against Lanczos up from
    the AVIF-decoded Lanczos LR); and how lossy_lr.rate_proxy follows AVIF's
    bytes over all those LRs (correlation of the logs)."""
    from PIL import Image
    from .. import lossy_lr
    from ..latent import DecoderInput
    paths = list_images([folder])[:limit]
    for ck in checkpoints:
        net, state = weights.load_checkpoint(ck)
        s = net.config.scale
        name = Path(ck).stem       # a registered model's file: its card's mask threshold
        t = (weights.card(name).defaults.threshold if name in weights.manifest() else
             state.get("train_config", {}).get("mask_threshold", MaskParams.threshold))
        mask = MaskParams(threshold=float(t))
        print(f"\n{ck} (x{s}), {len(paths)} photos of {folder}\n")
        print("| AVIF q | flow LR bytes | Lanczos LR bytes | ratio | flow PSNR | Lanczos PSNR |")
        print("|---|---|---|---|---|---|")
        rows, proxy = {q: [] for q in qualities}, []
        for path in paths:
            rgb = tiling.pad(load(path).rgb, s)
            h, w = rgb.shape[:2]
            flow = lossy_lr.to_uint8(tiling.forward_y(net, rgb))[0]
            lanczos = np.asarray(Image.fromarray(rgb).resize((w // s, h // s), Image.LANCZOS))
            dec_in = DecoderInput(net, tiling.mask_levels(rgb, s, mask), 1, 0, 0.0)
            for q in qualities:
                a, b = lossy_lr.encode(flow, q), lossy_lr.encode(lanczos, q)
                out = tiling.inverse_rgb(net, lossy_lr.decode(a, flow.shape), dec_in)
                up = np.asarray(Image.fromarray(lossy_lr.decode(b, lanczos.shape)).resize((w, h), Image.LANCZOS))
                rows[q].append((len(a), len(b), psnr(rgb, out), psnr(rgb, up)))
                for lr, n in ((flow, len(a)), (lanczos, len(b))):
                    t = torch.from_numpy(lr / 255.0).permute(2, 0, 1)[None].float()
                    proxy.append((q, lossy_lr.rate_proxy(t).item(), np.log2(n)))
        for q in qualities:
            m = np.mean(rows[q], axis=0)
            print(f"| {q} | {m[0]:.0f} | {m[1]:.0f} | {m[0] / m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} |")
        for q in qualities:
            p = np.array([(x, y) for qq, x, y in proxy if qq == q])
            if len(p) < 3 or not (np.ptp(p[:, 0]) and np.ptp(p[:, 1])):   # no line to fit
                print(f"rate_proxy vs log2 AVIF bytes at q{q}: too few distinct points ({len(p)})")
                continue
            print(f"rate_proxy vs log2 AVIF bytes at q{q}: correlation {np.corrcoef(p[:, 0], p[:, 1])[0, 1]:.3f}, "
                  f"slope {np.polyfit(p[:, 0], p[:, 1], 1)[0]:.2f}")


TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)


def temperature(data: Path, qualities=(10, 50, 90), temps=TEMPERATURES, models=(), checkpoints=()) -> None:
    """Val PSNR against the decode's Z temperature.  Each photo is encoded
    once per quality and decoded at each t (decode's override: without
    --refine the encoder does not depend on t), Z from seed 1.  Per t: mean
    PSNR, its mean and worst change against t = 0, and whether seed 2 draws
    other pixels.  Default: the -q ladder with the default models; --model
    NAME or --checkpoint PATH: that network at LR (AVIF) quality q, empty mask."""
    images = _val_images(data)
    runs = []   # (label, settings at quality q, network or None)
    for ck in checkpoints:
        net, _ = weights.load_checkpoint(ck)
        base = EncodeSettings(scale=net.config.scale, threshold=65535.0, lr_step=1, lr_space="rgb",
                              lr_codec="avif", temperature=0.0)
        runs.append((str(ck), lambda q, b=base: replace(b, lr_quality=q), net))
    for name in models:
        runs.append((name, lambda q, n=name: EncodeSettings(model=n, lr_quality=q, temperature=0.0), None))
    if not runs:
        runs.append(("-q ladder", lambda q: EncodeSettings(quality=q, temperature=0.0), None))
    print(f"\n{len(images)} photos of {data / 'val'}, Z seed 1 (seed 2 for 'seeds differ')\n")
    print("| network | q | t | bpp | PSNR | change vs t = 0, mean | worst | seeds differ |")
    print("|---|---|---|---|---|---|---|---|")
    for label, settings_at, net in runs:
        for q in qualities:
            rows = []   # per photo: bpp, PSNR at each t, seeds differ at each t
            for _, pic in images:
                data_q = codec.encode_ex(pic.rgb, settings_at(q), net=net).data
                bpp = 8 * len(data_q) / (pic.rgb.shape[0] * pic.rgb.shape[1])
                outs = [codec.decode_array(data_q, net=net, temperature=t, seed=1)[0] for t in temps]
                differ = [t > 0 and not np.array_equal(
                    o, codec.decode_array(data_q, net=net, temperature=t, seed=2)[0]) for t, o in zip(temps, outs)]
                rows.append((bpp, [psnr(pic.rgb, o) for o in outs], differ))
            bpp = np.mean([r[0] for r in rows])
            p = np.array([r[1] for r in rows])
            for i, t in enumerate(temps):
                d = p[:, i] - p[:, 0]
                seeds = f"{sum(r[2][i] for r in rows)}/{len(rows)}" if t > 0 else "-"
                print(f"| {label} | {q} | {t:g} | {bpp:.3f} | {p[:, i].mean():.2f} | {d.mean():+.2f} | "
                      f"{d.min():+.2f} | {seeds} |")


def gain_estimate(folder: Path, qualities=(86, 90, 95, 100)) -> None:
    """What choosing x1's gain map from the encoder's estimate of the head
    (encoder._head_estimate: bfloat16 where the CPU has it) costs against
    choosing it from the decoder's own float32 output: per -q (x1 only), the
    blocks whose level differs and the decoded PSNR change, mean and worst."""
    from .. import head_gain, lossy_lr
    paths = list_images([folder])
    print(f"\n{len(paths)} photos of {folder}; CPU: {cpu()}\n")
    print("| -q | AVIF q | model | blocks that differ | PSNR change, mean | worst |")
    print("|---|---|---|---|---|---|")
    for q in qualities:
        st = EncodeSettings(quality=q).resolved()
        if st.scale != 1:
            continue
        net, changes, differ, blocks = weights.load_model(st.model), [], 0, 0
        for path in paths:
            x = load(path).rgb
            avif = lossy_lr.encode(x, st.lr_quality, st.avif_speed)
            d = lossy_lr.decode(avif, x.shape)
            h = tiling.restore_rgb(net, d)
            exact = head_gain.choose(x, d, h, len(avif))
            estimated = head_gain.choose(x, d, encoder._head_estimate(net, d), len(avif))
            changes.append(psnr(x, head_gain.apply(d, h, estimated)) - psnr(x, head_gain.apply(d, h, exact)))
            differ, blocks = differ + int((exact != estimated).sum()), blocks + exact.size
        print(f"| {q} | {st.lr_quality} | {st.model} | {differ} of {blocks} | {np.mean(changes):+.4f} | "
              f"{min(changes):+.4f} |")


PLAIN_QUALITIES = tuple(range(0, 101, 5))   # refine-gain's plain curve, with the -q it scores


def refine_gain(folder: Path, qualities, refine=True) -> None:
    """`encode -q Q --refine` against the plain files at the same size: per
    photo, the refined file's PSNR minus that of the plain -q curve (every -q
    in PLAIN_QUALITIES and Q) at the refined file's bpp, interpolated in
    log-bpp; then the mean, least and most over the photos inside the curve,
    the bytes against the plain file of the same -q, how many photos took
    another scale's file, and the encode time."""
    paths = list_images([folder])
    print(f"\n{len(paths)} photos of {folder}, {_refine_flags(refine, 'rd')}; CPU: {cpu()}; "
          f"{torch.get_num_threads()} threads\n")
    print("| -q | scale (LR quality) | bytes against plain | at equal size: mean (dB) | least | most | "
          "another scale's file | encode (s), mean |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {q: [] for q in qualities}
    for path in paths:
        x = load(path).rgb

        def point(st):
            e = codec.encode_ex(path, st)
            return 8 * len(e.data) / (x.shape[0] * x.shape[1]), psnr(x, codec.decode_array(e.data)[0]), e
        curve = {q: point(EncodeSettings(quality=q))[:2] for q in sorted(set(PLAIN_QUALITIES) | set(qualities))}
        bpps, psnrs = (np.array(v) for v in zip(*sorted(curve.values())))
        for q in qualities:
            bpp, p, e = point(EncodeSettings(quality=q, refine=refine, device="cpu"))
            inside = bpps[0] <= bpp <= bpps[-1]
            gap = p - np.interp(np.log(bpp), np.log(bpps), psnrs) if inside else np.nan
            other = any(n.startswith("a plain x") for n in e.notices)
            rows[q].append((bpp / curve[q][0], gap, other, e.seconds))
    for q in qualities:
        ratio, gaps, other, secs = zip(*rows[q])
        inside = [g for g in gaps if np.isfinite(g)]
        st = EncodeSettings(quality=q).resolved()
        print(f"| {q} | x{st.scale} ({st.lr_quality}) | x{np.mean(ratio):.3f} | "
              f"{np.mean(inside):+.3f} ({len(inside)} of {len(gaps)}) | {min(inside):+.2f} | "
              f"{max(inside):+.2f} | {sum(other)} | {np.mean(secs):.1f} |")


def _chart() -> np.ndarray:
    """A line chart, 768x512: three curves two pixels thick on a grid."""
    chart = np.full((512, 768, 3), 255, np.uint8)
    chart[::64, :] = 200
    chart[:, ::64] = 200
    t = np.arange(768)
    for k, colour in enumerate(((220, 40, 40), (40, 120, 220), (40, 160, 60))):
        y = (256 + 180 * np.sin(t / (60 + 25 * k) + k)).astype(int)
        for dy in (0, 1):
            chart[np.clip(y + dy, 0, 511), t] = colour
    return chart


def graphics_set(data: Path) -> dict:
    """Graphics for `graphics`: scikit-image's CC0 text, page, horse, logo,
    checkerboard and colour wheel, a screenshot of text in Pillow's own font,
    a chart drawn here, and Set14's slide (ppt3) where DIR/val has it."""
    import skimage.data
    from PIL import Image, ImageDraw, ImageFont
    out = {"chart": _chart()}
    for n in ("text", "page", "horse", "logo", "checkerboard", "colorwheel"):
        x = getattr(skimage.data, n)()
        out[n] = np.asarray(Image.fromarray((x * 255).astype(np.uint8) if x.dtype == bool else x).convert("RGB"))
    shot = Image.new("RGB", (768, 512), "white")
    draw, font = ImageDraw.Draw(shot), ImageFont.load_default(16)
    for i in range(24):
        draw.text((12, 10 + 20 * i), f"{i:2d}  The quick brown fox jumps over the lazy dog, 0123456789.",
                  fill="black", font=font)
    draw.rectangle((560, 40, 740, 200), fill=(30, 100, 200))
    out["screenshot"] = np.asarray(shot)
    slide = data / "val" / "set14" / "img_013_SRF_4_HR.png"
    if slide.exists():
        out["Set14 ppt3"] = load(slide).rgb
    return out


@contextlib.contextmanager
def _no_graphics_checks():
    """The encoder as if it had neither check for graphics: the look at the
    flow's -q (rate_control._x1_for_graphics) and the gain map below AVIF quality
    61 (head_gain.FLAT_SHARE)."""
    saved = rate_control.GRAPHICS_GAP_DB, head_gain.FLAT_SHARE
    rate_control.GRAPHICS_GAP_DB, head_gain.FLAT_SHARE = {}, float("inf")
    try:
        yield
    finally:
        rate_control.GRAPHICS_GAP_DB, head_gain.FLAT_SHARE = saved


def graphics(data: Path, folder: Path | None, qualities=(2, 5, 20, 30, 40, 45, 55, 65, 75, 85), limit: int | None = None) -> None:
    """-q on graphics (graphics_set) or the photos of `folder`: per image and
    -q, the ladder's own file (without the checks for graphics), the gap that
    decides whether x1's file is made at the flow's -q (rate_control.graphics_gap)
    and the share of flat pixels that decides x1's gain map below AVIF
    quality 61 (head_gain.flat_share), against the file written; then the
    mean encode time with and without the checks, interleaved per image."""
    images = graphics_set(data) if folder is None else _photos(folder)
    images = dict(list(images.items())[:limit])
    print(f"\n{len(images)} images ({folder or 'graphics'}); CPU: {cpu()}; {torch.get_num_threads()} threads\n")
    print("| image | -q | the ladder's file: scale, bytes, PSNR | gap (dB) | flat share | written: scale, bytes, PSNR |")
    print("|---|---|---|---|---|---|")
    changed, times = 0, {True: [], False: []}
    for name, x in images.items():
        flat = head_gain.flat_share(x)
        for q in qualities:
            with _no_graphics_checks():
                plain = codec.encode_ex(x, EncodeSettings(quality=q))
            e = codec.encode_ex(x, EncodeSettings(quality=q))
            times[False].append(plain.seconds)
            times[True].append(e.seconds)
            changed += e.data != plain.data
            s = plain.header.scale
            gap = rate_control.graphics_gap(load(x), plain.data, q) if s in rate_control.GRAPHICS_GAP_DB else None
            cells = [f"x{d.header.scale}, {len(d.data)}, {psnr(x, codec.decode_array(d.data)[0]):.2f}"
                     for d in (plain, e)]
            print(f"| {name} | {q} | {cells[0]} | {'-' if gap is None else f'{gap:.2f}'} | {flat:.2f} | {cells[1]} |")
    print(f"\n{changed} of {len(images) * len(qualities)} files changed by the checks; encode, mean: "
          f"{np.mean(times[True]):.2f} s with the checks, {np.mean(times[False]):.2f} s without")


def psnr_target(folder: Path, targets) -> None:
    """--psnr on the photos of `folder`: per target, the -q the search took,
    the PSNR reached over the target, the bytes against the file of one -q
    less (which falls short), and the encode time."""
    photos = _photos(folder)
    print(f"\n{len(photos)} photos ({folder}); CPU: {cpu()}; {torch.get_num_threads()} threads\n")
    print("| target (dB) | -q taken: mean (least, most) | over the target, dB: mean (most) | "
          "photos short at -q 100 | bytes against -q one less | encode s, mean |")
    print("|---|---|---|---|---|---|")
    for target in targets:
        qs, over, short, ratio, secs = [], [], 0, [], []
        for x in photos.values():
            e = codec.encode_ex(x, EncodeSettings(psnr=target))
            q = int(re.search(r"-q (\d+)", [n for n in e.notices if "-q " in n][-1]).group(1))
            got = psnr(x, codec.decode_array(e.data)[0])
            short += got < target
            qs.append(q)
            secs.append(e.seconds)
            if got >= target:
                over.append(got - target)
                if q > 0:
                    ratio.append(len(e.data) / len(codec.encode_ex(x, EncodeSettings(quality=q - 1)).data))
        print(f"| {target:g} | {np.mean(qs):.1f} ({min(qs)}, {max(qs)}) | "
              f"{np.mean(over):.2f} ({max(over):.2f}) | {short} | "
              f"x{np.mean(ratio) if ratio else float('nan'):.3f} | {np.mean(secs):.1f} |")


def thumbnails(folder: Path | None) -> None:
    """How far the small picture inside a file (`rescodec thumb`, the Pillow
    plugin's draft) is from a box downscale of the photo to its size, per
    scale: mean absolute difference in levels (0-255), per photo.  The
    photos of `folder`, or scikit-image's CC0 samples."""
    if folder is None:
        import skimage.data
        photos = {n: np.asarray(load(getattr(skimage.data, n)()).rgb)
                  for n in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")}
    else:
        photos = _photos(folder)
    from PIL import Image
    print(f"\n{len(photos)} photos ({folder or 'scikit-image samples'})\n")
    print("| scale (model) | " + " | ".join(photos) + " | mean |")
    print("|---" * (len(photos) + 2) + "|")
    for s in SCALES:
        errs = []
        for x in photos.values():
            data = codec.encode(x, scale=s)
            t = codec.thumbnail(data).astype(np.float64)
            box = np.asarray(Image.fromarray(x).resize((t.shape[1], t.shape[0]), Image.BOX), np.float64)
            errs.append(float(np.abs(t - box).mean()))
        model = codec.unpack(data).header.model
        print(f"| x{s} ({model}) | " + " | ".join(f"{e:.1f}" for e in errs) + f" | {np.mean(errs):.1f} |")


def decoders(folder: Path, scale: int, base: str, other: str, qualities) -> None:
    """Two decoders of one flow (a model and another head on it, as x2-avif-v11
    and v13) on the same bytes: per AVIF LR quality, the PSNR of `other`'s
    decode minus `base`'s, per photo of `folder`: where to switch between
    them is where the mean crosses 0."""
    nets = {n: weights.load_model(n) for n in (base, other)}
    if not nets[base].same_forward_levels(nets[other]):
        raise ValueError(f"{base} and {other} have different flows: the same bytes would not be the same LR")
    photos = _photos(folder)
    print(f"\n{len(photos)} photos ({folder}); x{scale}, {other} against {base}\n")
    print("| LR quality | mean dB | worst | best | photos ahead |")
    print("|---|---|---|---|---|")
    for q in qualities:
        d = []
        for x in photos.values():
            data = codec.encode_ex(x, EncodeSettings(scale=scale, lr_quality=q, model=base)).data
            d.append(psnr(x, codec.decode_array(data, net=nets[other])[0])
                     - psnr(x, codec.decode_array(data, net=nets[base])[0]))
        print(f"| {q} | {np.mean(d):+.3f} | {min(d):+.3f} | {max(d):+.3f} | {sum(v > 0 for v in d)} of {len(d)} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rescodec.evaluation.benchmark")
    p.add_argument("what", choices=["speed", "val", "memory", "checkpoints", "lr-codecs", "lr-cost",
                                    "temperature", "gain-estimate", "refine-gain", "graphics", "psnr-target",
                                    "thumbnails", "decoders"])
    p.add_argument("--data", help="datasets folder (default $RESCODEC_DATA or ../shared/datasets)")
    p.add_argument("--scale", type=int, action="append",
                   help="limit to these scales; memory: rows per -s instead of per -q")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--photo", type=Path,
                   help="speed, val: the image to time (default: Set14's 768x512 photo)")
    p.add_argument("--repeats", type=int, default=3, help="speed: best of this many")
    p.add_argument("--quality", type=int, action="append",
                   help="speed: rows per -q instead of per scale; memory: these -q (default 2 25 75); "
                        "temperature: these -q (default 10 50 90); gain-estimate: these -q (default 86 90 "
                        "95 100); refine-gain: these -q (default 2 5 20 40 45 75); graphics: (2 5 20 30 40 45 55 65 75 85)")
    p.add_argument("--speed", type=int, action="append", dest="lr_speeds",
                   help="speed: rows per AVIF speed of the LR too (default: the encoder's)")
    p.add_argument("--t", type=float, action="append", dest="temps",
                   help="temperature: these Z temperatures (default 0 0.25 0.5 0.75 1)")
    p.add_argument("--photos", type=Path,
                   help="lr-codecs, lr-cost: folder of photos (default DIR/train/bsds500); gain-estimate, "
                        "refine-gain, psnr-target: (DIR/val); graphics: (its own graphics); thumbnails: "
                        "(scikit-image's samples)")
    p.add_argument("--limit", type=int, help="lr-codecs, lr-cost: the first N photos (default 8); graphics: the first N images")
    p.add_argument("--checkpoint", type=Path, action="append",
                   help="checkpoints, lr-cost, temperature: the ones to score")
    p.add_argument("--model", action="append",
                   help="val, temperature: these registered models instead of the defaults")
    p.add_argument("--mp", type=float, action="append", help="memory: these sizes in MP (default 1, 12, 24)")
    p.add_argument("--psnr", type=float, action="append", help="psnr-target: these targets in dB (default 30 35 40)")
    p.add_argument("--refine", type=int, nargs="?", const=True, default=0, metavar="N",
                   help="memory, val, speed, refine-gain (after the subcommand): encode with --refine, "
                        "or (N) with N descent steps (--refine-iters N); refine-gain: --refine by default")
    p.add_argument("--refine-method", choices=METHODS, default=DEFAULT_METHOD,
                   help="val, speed, memory: the refine method")
    p.add_argument("--refine-lambda", type=float, help="val: rd's rate weight (default: the scale's)")
    p.add_argument("--mask-bits", type=int, default=MaskParams.bits, help="val: the mask's bits per level (1-3)")
    p.add_argument("--mask-threshold", type=float,
                   help="val: the mask's edge threshold T (default: each model's own)")
    p.add_argument("--lr-step", type=int, help="val: the LR quantiser's step (default: each model's own)")
    # no choices=: encode_ex checks the space, in one place
    p.add_argument("--lr-space", help="val: the LR codes' colour space, rgb or ycc (default: each model's own)")
    a = p.parse_args(argv)
    if a.threads < 0:
        p.error("--threads must be 0 (torch's default) or more")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        _run(p, a)
    except (RscError, ValueError, OSError) as e:   # bad photos or options: one line, not a traceback
        p.exit(1, f"{p.prog}: error: {e}\n")


def _photos(folder: Path) -> dict:
    """{name: RGB} of the images in `folder`; none is an error."""
    found = list_images([folder])
    if not found:
        raise ValueError(f"no images in {folder}")
    return {str(p.relative_to(folder)): load(p).rgb for p in found}


def _run(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    data = _data_dir(a.data)
    scales = tuple(a.scale or SCALES)
    if a.what == "speed":
        speed(data, a.repeats, scales, a.refine, a.refine_method, a.photo, a.quality or (),
              a.lr_speeds or ())
    elif a.what == "val":
        val(data, scales, tuple(a.model or ()), a.refine, a.refine_method, a.refine_lambda,
            a.mask_bits, a.mask_threshold, a.lr_step, a.lr_space, a.photo)
    elif a.what == "temperature":
        temps = tuple(a.temps or TEMPERATURES)
        temperature(data, tuple(a.quality or (10, 50, 90)), temps if 0.0 in temps else (0.0,) + temps,
                    tuple(a.model or ()), tuple(a.checkpoint or ()))
    elif a.what == "gain-estimate":
        gain_estimate(a.photos or data / "val", tuple(a.quality or (86, 90, 95, 100)))
    elif a.what == "refine-gain":
        refine_gain(a.photos or data / "val", tuple(a.quality or (2, 5, 20, 40, 45, 75)), a.refine or True)
    elif a.what == "psnr-target":
        psnr_target(a.photos or data / "val", tuple(a.psnr or (30.0, 35.0, 40.0)))
    elif a.what == "thumbnails":
        thumbnails(a.photos)
    elif a.what == "decoders":
        if not (a.scale and len(a.scale) == 1 and a.model and len(a.model) == 2 and a.quality):
            p.error("decoders needs one --scale, two --model (the files' own first) and --quality")
        decoders(a.photos or data / "val", a.scale[0], a.model[0], a.model[1], tuple(a.quality))
    elif a.what == "graphics":
        graphics(data, a.photos, *((tuple(a.quality),) if a.quality else ()), limit=a.limit)
    elif a.what == "lr-cost":
        if not a.checkpoint:
            p.error("lr-cost needs --checkpoint PATH (a training checkpoint or weights file; may repeat)")
        lr_cost(a.photos or data / "train" / "bsds500", a.checkpoint, a.limit or 8)
    elif a.what == "lr-codecs":
        lr_codecs(a.photos or data / "train" / "bsds500", scales if a.scale else (2, 4), a.limit or 8)
    elif a.what == "memory":
        memory(tuple(a.mp or (1, 12, 24)), tuple(a.quality or (2, 25, 75)), tuple(a.scale or ()),
               a.refine, a.refine_method, a.threads)
    else:
        if not a.checkpoint:
            p.error("checkpoints needs --checkpoint PATH (may repeat)")
        checkpoints(data, a.checkpoint)


if __name__ == "__main__":
    main()

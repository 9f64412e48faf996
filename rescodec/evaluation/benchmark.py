"""Benchmarks whose numbers go into BENCHMARKS.md and the README.

    python -m rescodec.evaluation.benchmark speed  [--data DIR] [--refine N]  # encode/decode time, section bytes
    python -m rescodec.evaluation.benchmark val    [--data DIR] [--model NAME] [--refine N [--refine-method rd|hcd]]
                                        # bpp, PSNR, SSIM vs JPEG, bicubic
    python -m rescodec.evaluation.benchmark rate-proxy  # the training rate term against JPEG XL bits
    python -m rescodec.evaluation.benchmark storage [--data DIR]  # LR codecs and mask coders, bytes
    python -m rescodec.evaluation.benchmark temperature [--data DIR]  # PSNR against Z temperature
    python -m rescodec.evaluation.benchmark hcd --scale 4 --hcd 15,0.02,0.004  # --refine-method hcd gain and cost
    python -m rescodec.evaluation.benchmark memory [--refine N] [--mp 24]  # peak RSS at 1, 12, 24 MP
    python -m rescodec.evaluation.benchmark hcd-tiles --scale 2     # --refine whole vs in tiles
    python -m rescodec.evaluation.benchmark ensemble --scale 4      # experiment: 8-way self-ensemble decode
    python -m rescodec.evaluation.benchmark channels --scale 2      # where the error is: Y, Cb, Cr vs JPEG
    python -m rescodec.evaluation.benchmark checkpoints --checkpoint runs/x4/checkpoint.pt  # PSNR, SSIM
    python -m rescodec.evaluation.benchmark train-step --threads 1 [--deep-width N]  # s per training step: fp32, channels_last, bf16

DIR defaults to $RESCODEC_DATA or ../shared/datasets.  Each prints a markdown
table; nothing here is a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .. import codec, container, lossless, mask_coding, refine, weights
from ..container import Header
from ..images import load
from ..mask import MaskParams, lr_mask
from .baselines import jpeg_at_bpp
from .metrics import bicubic_rescale, psnr, psnr_y, ssim
from ..training.train import list_images

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


def _photo_768x512(data: Path) -> np.ndarray:
    p = data / "val" / "set14" / "img_011_SRF_4_HR.png"
    if p.exists():
        return load(p).rgb
    import skimage.data
    from PIL import Image
    return np.asarray(Image.fromarray(skimage.data.coffee()).resize((768, 512), Image.BICUBIC))


def speed(data: Path, repeats: int = 3, scales=SCALES, refine: int = 0, method: str = refine.DEFAULT_METHOD) -> None:
    """Encode and decode time of the 768x512 photo, best of `repeats`;
    `refine` > 0: encode with that refinement (one repeat)."""
    img = _photo_768x512(data)
    repeats = 1 if refine else repeats
    print(f"torch threads: {torch.get_num_threads()}, image {img.shape[1]}x{img.shape[0]}"
          + (f", --refine {refine} --refine-method {method}" if refine else "") + "\n")
    print("| scale | encode s | decode s | total s | bytes | bpp | header B | LR B | mask B | mask share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in scales:
        codec.decode(codec.encode(img, s))            # warm-up: weights load, allocator
        enc_t, dec_t = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            e = codec.encode_ex(img, s, refine=refine, refine_method=method, device="cpu")
            enc_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode(e.data)
            dec_t.append(time.perf_counter() - t)
        n = len(e.data)
        ee, dd = min(enc_t), min(dec_t)
        print(f"| x{s} | {ee:.3f} | {dd:.3f} | {ee + dd:.3f} | {n} | {8 * n / img.shape[0] / img.shape[1]:.4f} "
              f"| {e.sizes['header']} | {e.sizes['LR']} | {e.sizes['mask']} | {e.sizes['mask'] / n:.1%} |")


def val(data: Path, scales=SCALES, models=(), refine: int = 0, method: str = refine.DEFAULT_METHOD,
        lam: float | None = None, bits: int = MaskParams.bits,
        threshold: float | None = None, lr_step: int | None = None,
        lr_space: str | None = None) -> None:
    """The per-scale table: params, decode time (768x512), bpp, PSNR RGB and
    Y, SSIM, JPEG at the same bpp, bicubic rescaling, and Set14 Y-PSNR with
    IRN's protocol (Y of BT.601, `s` border pixels cropped) next to IRN's.
    `models`: registered names to measure instead of each scale's default;
    `refine`: encode with N iterations of `method` (rd with rate weight
    `lam`, None = the scale's default, or hcd); `bits`, `threshold`: the
    mask's (Algorithm 1; threshold None: each model's own), for files made
    with other than the defaults;
    `lr_step`, `lr_space`: the LR quantiser's step and colour space (None:
    each model's own)."""
    items = _val_images(data)
    photo = _photo_768x512(data)
    print(f"{len(items)} images from {data / 'val'}; PSNR on RGB, whole image, no border crop"
          + (f"; encoded with --refine {refine} --refine-method {method}"
             + (f", lambda {lam}" if lam is not None else "") if refine else "")
          + (f"; mask bits {bits}" if bits != MaskParams.bits else "")
          + (f"; mask threshold {threshold:g}" if threshold is not None else "")
          + (f"; LR step {lr_step}" if lr_step is not None else "")
          + (f"; LR space {lr_space}" if lr_space is not None else "") + "\n")
    print("| scale | model | params | decode s (768x512) | bpp | PSNR RGB | PSNR Y | SSIM "
          "| JPEG @ same bpp | bicubic rescale | mask share | Set14 Y, crop s (IRN) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    times = []
    for name in models or [weights.default_model(s) for s in scales]:
        net = weights.load_model(name)
        s = net.config.scale
        rows, set14, enc_s = [], [], 0.0
        for path, pic in items:
            rgb = pic.rgb
            e = codec.encode_ex(rgb, s, model=name, refine=refine, refine_method=method,
                                refine_lambda=lam, bits=bits, threshold=threshold, lr_step=lr_step,
                                lr_space=lr_space)
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
        data_768 = codec.encode(photo, s, model=name, lr_step=lr_step, lr_space=lr_space)
        codec.decode(data_768)                          # warm-up
        dec = []
        for _ in range(3):
            t = time.perf_counter()
            codec.decode(data_768)
            dec.append(time.perf_counter() - t)
        irn = IRN_SET14_Y.get(s)
        print(f"| x{s} | {name} | {params / 1e6:.2f} M | {min(dec):.3f} | {m[0]:.3f} | {m[1]:.2f} "
              f"| {m[2]:.2f} | {m[3]:.4f} | {m[4]:.2f}{clamped} | {m[5]:.2f} | {m[6]:.1%} "
              f"| {statistics.mean(set14) if set14 else float('nan'):.2f}"
              f"{f' ({irn})' if irn else ''} |", flush=True)
        times.append(f"x{s} {enc_s / len(items):.1f} s")
    print("\nmean encode time per image (refinement included): " + ", ".join(times))


def storage(data: Path, scales=SCALES) -> None:
    """Total bytes over the val set of each LR codec and each mask coder."""
    items = _val_images(data)
    print("| scale | LR: PNG | LR: WebP lossless | LR: zstd raw | LR: JPEG XL lossless | LR kept | "
          "mask 1b: bitplanes+zstd | mask 1b: context | mask 3b: bitplanes+zstd | mask 3b: context |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in scales:
        net = weights.load_model(weights.default_model(s))
        tot = np.zeros(9)
        for _, pic in items:
            padded = codec._pad(pic.rgb, s)
            with torch.inference_mode():
                lr = codec.to_uint8(net(codec.to_tensor(padded))[:, :3])
            sizes = [len(lossless.encode(lr, codecs=(c,))) for c in lossless.CODEC_NAMES]
            masks = []
            for bits in (1, 3):
                lv = lr_mask(padded, s, MaskParams(bits=bits))
                masks += [1 + len(mask_coding._encode_bitplanes(lv, bits)),
                          1 + len(mask_coding._encode_context(lv, bits))]
            tot += sizes + [min(sizes)] + masks
        print(f"| x{s} | " + " | ".join(str(int(v)) for v in tot) + " |")


def rate_proxy(data: Path, scales=(2, 4, 8)) -> None:
    """How well lossless.rate_proxy predicts the lossless LR's bits: the shipped
    models' LR images and bicubic LR images of the val set, against lossless
    JPEG XL bits per sample; least-squares line and correlation."""
    from ..lossless import rate_proxy as proxy_of
    from ..training.train import bicubic_lr
    items = _val_images(data)
    pts = []
    for s in scales:
        net = weights.load_model(weights.default_model(s))
        for _, pic in items:
            padded = codec._pad(pic.rgb, s)
            with torch.inference_mode():
                flow = codec.to_uint8(net(codec.to_tensor(padded))[:, :3])
            bic = codec.to_uint8(bicubic_lr(codec.to_tensor(padded), s))
            for lr in (flow, bic):
                bits = 8 * (len(lossless.encode(lr, codecs=(lossless.JXL,))) - 1) / lr.size
                pts.append((proxy_of(codec.to_tensor(lr)).item(), bits))
    x, y = np.array(pts).T
    slope, icpt = np.polyfit(x, y, 1)
    rmse = float(np.sqrt(np.mean((slope * x + icpt - y) ** 2)))
    print(f"{len(pts)} LR images (x{', x'.join(map(str, scales))}, flow and bicubic)\n")
    print("| correlation | bits/sample fit | RMSE bits | bits range |")
    print("|---|---|---|---|")
    print(f"| {np.corrcoef(x, y)[0, 1]:.4f} | {slope:.3f} * proxy + {icpt:.3f} | {rmse:.3f} "
          f"| {y.min():.2f} .. {y.max():.2f} |")


def temperature(data: Path, scales=SCALES, temps=(0.0, 0.25, 0.5, 0.75, 1.0)) -> None:
    items = _val_images(data)
    print("| scale | " + " | ".join(f"t={t}" for t in temps) + " |")
    print("|---|" + "---|" * len(temps))
    for s in scales:
        res = []
        for t in temps:
            vals = []
            for _, pic in items:
                out, _, _ = codec.decode_array(codec.encode(pic.rgb, s, temperature=t))
                vals.append(psnr(pic.rgb, out))
            res.append(statistics.mean(vals))
        print(f"| x{s} | " + " | ".join(f"{v:.2f}" for v in res) + " |")


def hcd(data: Path, scales, settings, subset: str = "", threads: int = 0, models=()) -> None:
    """PSNR gain, size change and time of --refine, per setting (N, eps, alpha);
    `models`: registered names instead of each scale's default."""
    if threads:
        torch.set_num_threads(threads)
    items = [(p, pic) for p, pic in _val_images(data) if subset in str(p)]
    print(f"{len(items)} images ({subset or 'all val'}), torch threads {torch.get_num_threads()}\n")
    print("| scale | N | eps | alpha | PSNR plain | PSNR refined | gain dB | size change | s / image |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models or [weights.default_model(s) for s in scales]:
        s = weights.entry(name)["scale"]
        plain = {}
        for p, pic in items:
            d = codec.encode(pic.rgb, s, model=name)
            plain[p] = (len(d), psnr(pic.rgb, codec.decode_array(d)[0]))
        for n, eps, alpha in settings:
            gains, sizes, secs, ref = [], [], [], []
            for p, pic in items:
                t = time.perf_counter()
                d = codec.encode(pic.rgb, s, refine=n, refine_method="hcd", refine_eps=eps or None,
                                 refine_alpha=alpha or None, device="cpu", model=name)
                secs.append(time.perf_counter() - t)
                q = psnr(pic.rgb, codec.decode_array(d)[0])
                ref.append(q)
                gains.append(q - plain[p][1])
                sizes.append(len(d) / plain[p][0] - 1)
            print(f"| x{s} {name} | {n} | {eps} | {alpha} | {statistics.mean(v[1] for v in plain.values()):.2f} "
                  f"| {statistics.mean(ref):.2f} | {statistics.mean(gains):+.3f} "
                  f"| {statistics.mean(sizes):+.2%} | {statistics.mean(secs):.1f} |", flush=True)


def hcd_tiles(data: Path, scales, iters: int = 10) -> None:
    """--refine whole against in tiles (forced) on the 768x512 photo: the
    tiles' gain should match the whole image's."""
    img = _photo_768x512(data)
    print("| scale | plain PSNR | whole-image HCD (gain) | tiled HCD (gain) | encoder's tiled estimate |")
    print("|---|---|---|---|---|")
    for s in scales:
        plain = psnr(img, codec.decode_array(codec.encode(img, s))[0])
        whole = psnr(img, codec.decode_array(codec.encode(img, s, refine=iters, refine_method="hcd",
                                                          device="cpu"))[0])
        keep, refine.WHOLE_MAX_PIXELS = refine.WHOLE_MAX_PIXELS, 0
        try:
            e = codec.encode_ex(img, s, refine=iters, refine_method="hcd", device="cpu")
        finally:
            refine.WHOLE_MAX_PIXELS = keep
        tiled = psnr(img, codec.decode_array(e.data)[0])
        est = e.notices[-1].split(": ")[1].split(" (")[0]
        print(f"| x{s} | {plain:.2f} | {whole:.2f} ({whole - plain:+.3f}) | {tiled:.2f} "
              f"({tiled - plain:+.3f}) | {est} |", flush=True)


def ensemble(data: Path, scales) -> None:
    """Experiment, not a codec feature: decoder-side self-ensemble.  Decode the
    same 8-bit LR and mask under the 8 flips/rotations and average the
    un-transformed outputs (no bytes added; 8x decode time)."""
    from ..tiling import to_uint8
    from ..training.train import decoder_inputs
    items = _val_images(data)
    print("| scale | model | PSNR plain | PSNR 8-way ensemble | gain dB |")
    print("|---|---|---|---|---|")
    for s in scales:
        name = weights.default_model(s)
        net = weights.load_model(name)
        plain, ens = [], []
        for _, pic in items:
            rgb = _crop_to_scale(pic.rgb, s)
            with torch.inference_mode():
                y, b, z_shape = decoder_inputs(net, rgb, MaskParams())
                z = torch.zeros(z_shape)
                outs = []
                for k in range(4):
                    for flip in (False, True):
                        def t(a):
                            a = torch.rot90(a, k, (2, 3))
                            return torch.flip(a, (3,)) if flip else a

                        def t_inv(a):
                            a = torch.flip(a, (3,)) if flip else a
                            return torch.rot90(a, -k, (2, 3))
                        zz = z if k % 2 == 0 else z.transpose(2, 3)
                        outs.append(t_inv(net.inverse(torch.cat([t(y), t(b), zz], dim=1))).clamp(0, 1))
            plain.append(psnr(rgb, to_uint8(outs[0])))
            ens.append(psnr(rgb, to_uint8(torch.stack(outs).mean(0))))
        print(f"| x{s} | {name} | {statistics.mean(plain):.2f} | {statistics.mean(ens):.2f} "
              f"| {statistics.mean(ens) - statistics.mean(plain):+.3f} |", flush=True)


def channels(data: Path, scales) -> None:
    """Diagnostic: PSNR per YCbCr channel (full-range BT.601, Pillow's
    conversion) of the plain codec and of JPEG at the largest quality whose
    file is no larger, to show whether a deficit is in luma or in colour."""
    from PIL import Image
    from .baselines import matched

    def ycc(rgb):
        return np.asarray(Image.fromarray(rgb).convert("YCbCr")).astype(np.float64)

    items = _val_images(data)
    refs = [ycc(pic.rgb) for _, pic in items]
    colour = [np.ptp(ref[..., 1:]) > 0 for ref in refs]     # a grey image's JPEG chroma is exact (inf dB)
    print(f"{len(items)} val images; Cb and Cr are means over the {sum(colour)} colour ones\n")
    print("| scale | model | bpp | JPEG bpp | RGB | Y | Cb | Cr | JPEG RGB | JPEG Y | JPEG Cb | JPEG Cr |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in scales:
        name = weights.default_model(s)
        rows, chroma = [], []
        for (_, pic), ref, has_colour in zip(items, refs, colour):
            rgb = pic.rgb
            data_ = codec.encode(rgb, s, model=name)
            out, _, _ = codec.decode_array(data_)
            jp = matched(rgb, "JPEG", len(data_))
            ours, theirs = ycc(out), ycc(jp.decoded)
            rows.append((8 * len(data_) / rgb.shape[0] / rgb.shape[1],
                         8 * jp.nbytes / rgb.shape[0] / rgb.shape[1], psnr(rgb, out),
                         psnr(ref[..., 0], ours[..., 0]), psnr(rgb, jp.decoded),
                         psnr(ref[..., 0], theirs[..., 0])))
            if has_colour:
                chroma.append([psnr(ref[..., c], o[..., c]) for o in (ours, theirs) for c in (1, 2)])
        m = [statistics.mean(c) for c in zip(*rows)]
        c = [statistics.mean(v) for v in zip(*chroma)]
        print(f"| x{s} | {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.2f} | {m[3]:.2f} | {c[0]:.2f} | {c[1]:.2f} "
              f"| {m[4]:.2f} | {m[5]:.2f} | {c[2]:.2f} | {c[3]:.2f} |", flush=True)


def _checkpoint_net(path: Path):
    from ..flow import FlowConfig, RescaleFlow
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = RescaleFlow(FlowConfig(**state["flow_config"]))
    net.load_state_dict({k: v.float() for k, v in state["model"].items()})
    return net.eval(), state


def checkpoints(data: Path, paths) -> None:
    """PSNR RGB / Y and SSIM of training checkpoints on val, by the codec's
    round trip (train.round_trip at the run's LR step and space), images cropped to a
    multiple of the scale; bpp of the whole file the codec would write (LR
    codes, mask, header) and JPEG's PSNR at that bpp, so runs that trade
    bits for PSNR are compared by their margin."""
    from ..training.train import round_trip
    items = _val_images(data)
    print("| checkpoint | step | train CPU-min | LR step | mask T | bpp | PSNR RGB | PSNR Y | SSIM "
          "| JPEG @ same bpp | margin |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        net, state = _checkpoint_net(path)
        s = net.config.scale
        step = state["train_config"].get("lr_step", 1)
        space = state["train_config"].get("lr_space", "rgb")
        params = MaskParams(threshold=state["train_config"].get("mask_threshold", MaskParams.threshold))
        rows = []
        for _, pic in items:
            rgb = _crop_to_scale(pic.rgb, s)
            codes, out = round_trip(net, rgb, params, step=step, space=space)
            levels = lr_mask(rgb, s, params)
            header = Header(width=rgb.shape[1], height=rgb.shape[0], mode="RGB", scale=s,
                            mask_bits=1, mask_norm=2, mask_threshold=params.threshold,
                            mask_sigma=MaskParams.sigma, z_seed=0, z_temperature=0.0,
                            weights_hash=bytes(8), model=f"rescodec-x{s}-vn", lr_step=step,
                            lr_space=space)
            n = len(container.pack(header, lossless.encode(codes), mask_coding.encode(levels, 1)))
            bpp = 8 * n / (rgb.shape[0] * rgb.shape[1])
            rows.append((bpp, psnr(rgb, out), psnr_y(rgb, out), ssim(rgb, out),
                         jpeg_at_bpp(rgb, bpp)["psnr"]))
        m = [statistics.mean(c) for c in zip(*rows)]
        print(f"| {path} | {state.get('step', '-')} | {state.get('cpu_s', 0) / 60:.1f} | {step}{' ycc' if space == 'ycc' else ''} | {params.threshold:g} "
              f"| {m[0]:.3f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.4f} | {m[4]:.2f} | {m[1] - m[4]:+.2f} |",
              flush=True)


def temperature_checkpoint(data: Path, path: Path, temps=(0.0, 0.25, 0.5, 1.0)) -> None:
    """PSNR against Z temperature for a training checkpoint (not yet exported):
    the codec's round trip (train.reconstruct: 8-bit Y, the mask as B,
    Z = t N(0,1), seed 0) on val images cropped to a multiple of the scale."""
    from ..training.train import reconstruct
    net, state = _checkpoint_net(path)
    s = net.config.scale
    items = _val_images(data)
    res = []
    for t in temps:
        vals = []
        for _, pic in items:
            rgb = _crop_to_scale(pic.rgb, s)
            vals.append(psnr(rgb, reconstruct(net, rgb, MaskParams(), temperature=t)))
        res.append(statistics.mean(vals))
    print(f"{path} (x{s}, step {state['step']}, trained at Z temperature "
          f"{state['train_config']['z_temperature']})\n")
    print("| " + " | ".join(f"t={t}" for t in temps) + " |")
    print("|" + "---|" * len(temps))
    print("| " + " | ".join(f"{v:.2f}" for v in res) + " |")


# the shipped models' training patches and batches (BENCHMARKS.md, "Shipped models")
TRAIN_RECIPES = {2: (64, 16), 4: (96, 8), 8: (128, 8), 16: (192, 4)}


def train_step(scales, threads: int = 1, repeats: int = 3, deep_width: int = 0,
               prior_width: int = 0, prior_blocks: int = 2) -> None:
    """Seconds per training step (all BDFlow losses, backward) of the shipped
    architecture (or with `deep_width`, a latent prior), in float32, in
    channels_last, and under bfloat16 autocast."""
    from ..flow import FlowConfig, RescaleFlow
    from ..training.train import TrainConfig, batch_tensor, losses, mask_targets
    if threads:
        torch.set_num_threads(threads)
    print(f"torch threads: {torch.get_num_threads()}, deep width: {deep_width or 'width'}, "
          f"latent prior: {f'{prior_width} x {prior_blocks} blocks' if prior_width else 'none'}")
    print("| scale | patch x batch | fp32 s/step | channels_last s/step | bf16 autocast s/step |")
    print("|---|---|---|---|---|")
    for s in scales:
        patch, batch = TRAIN_RECIPES[s]
        model = RescaleFlow(FlowConfig(scale=s, b_scale=0.03, deep_width=deep_width,
                                       prior_width=prior_width, prior_blocks=prior_blocks))
        cfg = TrainConfig()
        pt = np.random.default_rng(0).integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)
        b_lr, bs = mask_targets(pt, s, MaskParams(), model.config.b_scale)
        x = batch_tensor(pt, torch.contiguous_format)

        def timed(bf16: bool) -> float:
            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = sum(losses(model, x, b_lr, bs, cfg, True).values())
                model.zero_grad(set_to_none=True)
                loss.backward()
            step()                                            # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            return min(times)

        fp32, bf16 = timed(False), timed(True)
        model = model.to(memory_format=torch.channels_last)
        x = batch_tensor(pt)
        last = timed(False)
        print(f"| x{s} | {patch} x {batch} | {fp32:.3f} | {last:.3f} | {bf16:.3f} |", flush=True)


def _rss_child(args) -> None:
    """Run in a fresh process: encode or decode one file, print peak RSS (MiB).
    VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child
    would report its parent's peak."""
    what, src, dst, s, refine, method = args
    if what == "encode":
        Path(dst).write_bytes(codec.encode(src, int(s), refine=int(refine), refine_method=method,
                                           device="cpu"))
    else:
        codec.decode(Path(src).read_bytes())
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    print(int(hwm.split()[1]) / 1024)


def memory(sizes_mp=(1, 12, 24), scales=SCALES, refine: int = 0, method: str = refine.DEFAULT_METHOD) -> None:
    """Peak RSS and time of encode and decode of synthetic photos (a CC0
    sample upscaled plus noise) at 1, 12 and 24 megapixels, each in a fresh
    process; `refine` > 0 encodes with that refinement, `method` rd or hcd
    (tiled above refine.WHOLE_MAX_PIXELS)."""
    import subprocess
    import sys
    import tempfile
    import skimage.data
    from PIL import Image
    tmp = Path(tempfile.mkdtemp())
    print("| megapixels | scale | encode s | encode peak RSS MiB | decode s | decode peak RSS MiB | bpp |")
    print("|---|---|---|---|---|---|---|")
    for mp in sizes_mp:
        w = int((mp * 1e6 * 1.5) ** 0.5)
        h = int(mp * 1e6 / w)
        base = Image.fromarray(skimage.data.coffee()).resize((w, h), Image.BICUBIC)
        noise = np.random.default_rng(0).integers(-6, 7, (h, w, 3))
        src = tmp / f"{mp}mp.png"
        Image.fromarray(np.clip(np.asarray(base) + noise, 0, 255).astype(np.uint8)).save(src)
        for s in scales:
            dst = tmp / f"{mp}mp_x{s}.rsc"
            res = []
            for what, a, b in (("encode", src, dst), ("decode", dst, None)):
                t = time.perf_counter()
                out = subprocess.run([sys.executable, "-c",
                                      "import sys; from rescodec.evaluation.benchmark import _rss_child; "
                                      f"_rss_child({(what, str(a), str(b), s, refine, method)!r})"],
                                     capture_output=True, text=True, check=True)
                res += [time.perf_counter() - t, float(out.stdout.split()[-1])]
            bpp = 8 * dst.stat().st_size / (w * h)
            print(f"| {w * h / 1e6:.1f} ({w}x{h}) | x{s} | {res[0]:.1f} | {res[1]:.0f} | {res[2]:.1f} "
                  f"| {res[3]:.0f} | {bpp:.3f} |", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rescodec.evaluation.benchmark")
    p.add_argument("what", choices=["speed", "val", "storage", "temperature", "hcd", "memory",
                                    "checkpoints", "hcd-tiles", "ensemble", "rate-proxy",
                                    "channels", "train-step"])
    p.add_argument("--hcd", action="append", metavar="N,EPS,ALPHA",
                   help="a refine setting to measure (hcd); may repeat")
    p.add_argument("--subset", default="", help="only val images whose path contains this")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--checkpoint", type=Path, action="append",
                   help="temperature: a training checkpoint instead; checkpoints: the ones to score")
    p.add_argument("--data", help="datasets folder (default $RESCODEC_DATA or ../shared/datasets)")
    p.add_argument("--scale", type=int, action="append", help="limit to these scales")
    p.add_argument("--model", action="append", help="val, hcd: these registered models instead of the defaults")
    p.add_argument("--mp", type=float, action="append", help="memory: these sizes in MP (default 1, 12, 24)")
    p.add_argument("--refine", type=int, default=0, help="memory, val, speed: encode with N refine iterations")
    p.add_argument("--refine-method", choices=refine.METHODS, default=refine.DEFAULT_METHOD,
                   help="val, speed, memory: the refine method")
    p.add_argument("--refine-lambda", type=float, help="val: rd's rate weight (default: the scale's)")
    p.add_argument("--deep-width", type=int, default=0, help="train-step: FlowConfig.deep_width")
    p.add_argument("--prior-width", type=int, default=0, help="train-step: FlowConfig.prior_width")
    p.add_argument("--prior-blocks", type=int, default=2, help="train-step: FlowConfig.prior_blocks")
    p.add_argument("--mask-bits", type=int, default=MaskParams.bits, help="val: the mask's bits per level (1-3)")
    p.add_argument("--mask-threshold", type=float,
                   help="val: the mask's edge threshold T (default: each model's own)")
    p.add_argument("--lr-step", type=int, help="val: the LR quantiser's step (default: each model's own)")
    p.add_argument("--lr-space", choices=lossless.LR_SPACES,
                   help="val: the LR codes' colour space (default: each model's own)")
    a = p.parse_args(argv)
    data = _data_dir(a.data)
    if a.what == "speed":
        speed(data, scales=tuple(a.scale or SCALES), refine=a.refine, method=a.refine_method)
    elif a.what == "val":
        val(data, tuple(a.scale or SCALES), tuple(a.model or ()), a.refine, a.refine_method,
            a.refine_lambda, a.mask_bits, a.mask_threshold, a.lr_step, a.lr_space)
    elif a.what == "rate-proxy":
        rate_proxy(data, tuple(a.scale or (2, 4, 8)))
    elif a.what == "storage":
        storage(data, tuple(a.scale or SCALES))
    elif a.what == "memory":
        memory(tuple(a.mp or (1, 12, 24)), tuple(a.scale or SCALES), a.refine, a.refine_method)
    elif a.what == "ensemble":
        ensemble(data, tuple(a.scale or SCALES))
    elif a.what == "channels":
        channels(data, tuple(a.scale or SCALES))
    elif a.what == "train-step":
        train_step(tuple(a.scale or SCALES), a.threads, deep_width=a.deep_width,
                   prior_width=a.prior_width, prior_blocks=a.prior_blocks)
    elif a.what == "hcd-tiles":
        hcd_tiles(data, tuple(a.scale or SCALES))
    elif a.what == "checkpoints":
        checkpoints(data, a.checkpoint or [])
    elif a.what == "temperature" and a.checkpoint:
        temperature_checkpoint(data, a.checkpoint[0])
    elif a.what == "temperature":
        temperature(data, tuple(a.scale or SCALES))
    else:
        # no --hcd: each scale at its own defaults (eps/alpha 0 = the scale's setting)
        settings = [tuple(t(v) for t, v in zip((int, float, float), h.split(",")))
                    for h in a.hcd or [f"{refine.DEFAULT_ITERS},0,0"]]
        hcd(data, tuple(a.scale or SCALES), settings, a.subset, a.threads, tuple(a.model or ()))


if __name__ == "__main__":
    main()

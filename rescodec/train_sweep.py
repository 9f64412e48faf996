"""Quality per CPU-second of training candidates (issue: training).

    python -m rescodec.train_sweep run --minutes 7 --out runs/sweep [--only NAME ...]
    python -m rescodec.train_sweep report --out runs/sweep --plot docs/train-sweep.png

`run` trains each candidate at x4 for the same wall-clock budget, two at a
time with one torch thread each (the two cores of this machine), at a flat
learning rate (the cosine schedule is set far beyond the budget) so that the
curves compare the architectures, not where each run is in its schedule.
Each run records val PSNR against training CPU-seconds (validation excluded).
`report` prints the markdown table and draws the curves.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

COMMON = ["--scale", "4", "--lr", "1e-3", "--b-scale", "0.03", "--steps", "1000000",
          "--threads", "1", "--save-every-s", "120"]
AT_CPU_MIN = 2.5   # every candidate of the 7-minute sweep got past this (interpolated)
# name -> (extra train arguments, val_every); val_every gives ~5 points per run
CANDIDATES = {
    "base": (["--width", "32", "--blocks-per-level", "2", "--patch", "96", "--batch", "8"], 150),
    "width16": (["--width", "16", "--patch", "96", "--batch", "8"], 250),
    "width64": (["--width", "64", "--patch", "96", "--batch", "8"], 80),
    "blocks1": (["--blocks-per-level", "1", "--patch", "96", "--batch", "8"], 250),
    "blocks3": (["--blocks-per-level", "3", "--patch", "96", "--batch", "8"], 100),
    "res2": (["--res-blocks", "2", "--patch", "96", "--batch", "8"], 100),
    "patch64x16": (["--patch", "64", "--batch", "16"], 150),
    "init-x2": (["--patch", "96", "--batch", "8", "--init-from", "weights/rescodec-x2-v1.pt"], 150),
    "ssim": (["--patch", "96", "--batch", "8", "--lambda-ssim", "1.0"], 150),
}


def run(out: Path, minutes: float, names, train_dir: str, val_dir: str, parallel: int = 2) -> None:
    out.mkdir(parents=True, exist_ok=True)
    queue = list(names)
    while queue:
        batch, queue = queue[:parallel], queue[parallel:]
        procs = []
        for name in batch:
            extra, val_every = CANDIDATES[name]
            cmd = [sys.executable, "-m", "rescodec.train", "--out", str(out / name),
                   "--data", train_dir, "--val", val_dir, "--minutes", str(minutes),
                   "--val-every", str(val_every), *COMMON, *extra]
            log = open(out / f"{name}.log", "w")
            log.write(" ".join(cmd) + "\n")
            log.flush()
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait()


def _rows(out: Path):
    for name in CANDIDATES:
        ckpt_hist = out / name / "history.json"
        if ckpt_hist.exists():
            yield name, json.loads(ckpt_hist.read_text())


def report(out: Path, plot: Path | None) -> None:
    import torch
    from .flow import FlowConfig, RescaleFlow
    print(f"| candidate | params | steps | train CPU-min | val PSNR RGB | Y | RGB at {AT_CPU_MIN} CPU-min |")
    print("|---|---|---|---|---|---|---|")
    curves = {}
    for name, hist in _rows(out):
        if not hist:
            continue
        state = torch.load(out / name / "checkpoint.pt", map_location="cpu", weights_only=False)
        n = sum(p.numel() for p in RescaleFlow(FlowConfig(**state["flow_config"])).parameters())
        last = hist[-1]
        xs = [h["cpu_s"] / 60 for h in hist]
        ys = [h["psnr_rgb"] for h in hist]
        at = f"{np.interp(AT_CPU_MIN, xs, ys):.2f}" if xs[-1] >= AT_CPU_MIN else "-"
        curves[name] = (xs, ys)
        print(f"| {name} | {n / 1e6:.2f} M | {last['step']} | {xs[-1]:.1f} | "
              f"{last['psnr_rgb']:.2f} | {last['psnr_y']:.2f} | {at} |")
    if plot and curves:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, (xs, ys) in curves.items():
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_xlabel("training CPU-minutes (1 thread, validation excluded)")
        ax.set_ylabel("val PSNR RGB (dB), x4, Set5+Set14")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"\nplot: {plot}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m rescodec.train_sweep", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["run", "report"])
    p.add_argument("--out", type=Path, default=Path("runs/sweep"))
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    p.add_argument("--data", default="../shared/datasets/train")
    p.add_argument("--val", default="../shared/datasets/val")
    p.add_argument("--plot", type=Path)
    a = p.parse_args(argv)
    if a.what == "run":
        run(a.out, a.minutes, a.only, a.data, a.val)
    else:
        report(a.out, a.plot)


if __name__ == "__main__":
    main()

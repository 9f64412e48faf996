"""Fine-tune every default model on one GPU inside a fixed time, from a small data subset.

    python -m rescodec.training.gpu_finetune --data subset/ --out runs/gpu [--val val8/] [--minutes 10]

For each default model in the weights registry (one per scale, and per way of
storing the LR), this runs `python -m rescodec.training --device cuda` from
that model's weights (--init-from) with the model's own flow config and
training settings (lr, batch, patch, loss weights, LR step and colour space,
mask threshold, ...), one after the other.  --minutes is the total: each model
gets an equal share, its cosine schedule runs over 90 % of it (--schedule-minutes)
and the rest is left for start-up, the final validation and the checkpoint.  A
run past its share plus a minute gets SIGTERM, which saves and stops it.

Checkpoints land in one folder, one subfolder per scale: OUT/x2/checkpoint.pt,
OUT/x4/..., (OUT/x4-avif/... for a default trained for the AVIF LR).  Export one
with `rescodec.training.train.export_run`.

A data subset: a few dozen photos copied to a folder, each at least as large
as the largest patch (192 px at x16), e.g. the first 64 training images:

    mkdir subset && ls ../shared/datasets/train/sunhays80/*.png | head -64 | xargs cp -t subset

and, for --val, 4-8 validation images the same way (the final validation runs
the real codec on the CPU, so keep it small).

The CUDA path has not run on a GPU yet.  What is tested, on the CPU: the argument parsing (--help) and the commands it would
run (--dry-run).
"""
from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from ..flow import FlowConfig
from .train import TrainConfig

# set here for this job, never copied from the model's own run
OWN = {"data", "val", "init_from", "minutes", "schedule_minutes", "steps", "device",
       "threads", "val_every", "save_every_s"}
SCHEDULE_SHARE = 0.9   # of each model's minutes; the rest: start-up, validation, save
GRACE_S = 60           # past its share, a run gets SIGTERM (it saves, then stops)


def default_models() -> list[tuple[str, dict, Path]]:
    """(name, manifest entry, weights file) of each default model, by scale."""
    from .. import weights
    folder = weights.weights_dir()
    rows = [(n, e, folder / e["file"]) for n, e in weights.manifest().items() if e.get("default")]
    return sorted(rows, key=lambda r: (r[1]["scale"], r[0]))


def subfolder(entry: dict) -> str:
    avif = entry.get("train_config", {}).get("lr_codec", "lossless") == "avif"
    return f"x{entry['scale']}" + ("-avif" if avif else "")


def flags(cls, values: dict, skip=()) -> list[str]:
    """A dataclass's fields in `values` as training CLI flags (list fields left out)."""
    out = []
    for f in fields(cls):
        if f.name in skip or f.name not in values or isinstance(values[f.name], (list, dict)):
            continue
        out += [f"--{f.name.replace('_', '-')}", str(values[f.name])]
    return out


def command(entry: dict, weights_file: Path, a, minutes: float) -> list[str]:
    """The training command that fine-tunes one model for `minutes`."""
    run = dict(entry.get("train_config", {}))
    if a.batch:
        run["batch"] = a.batch
    cmd = [sys.executable, "-m", "rescodec.training", "--out", str(a.out / subfolder(entry)),
           "--data", str(a.data)]
    if a.val:
        cmd += ["--val", str(a.val)]
    cmd += flags(FlowConfig, entry["config"])
    cmd += flags(TrainConfig, run, skip=OWN)
    cmd += ["--init-from", str(weights_file), "--device", a.device, "--threads", str(a.threads),
            "--steps", "1000000", "--minutes", f"{minutes:.2f}",
            "--schedule-minutes", f"{minutes * SCHEDULE_SHARE:.2f}",
            "--val-every", "1000000000", "--save-every-s", "120"]
    return cmd


def run_one(cmd: list[str], limit_s: float) -> int:
    """Run one training; past `limit_s` send SIGTERM (it saves and stops)."""
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        return proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rescodec.training.gpu_finetune",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="folder of training photos (a small subset)")
    p.add_argument("--out", required=True, type=Path, help="checkpoints go to OUT/x<scale>/")
    p.add_argument("--val", type=Path, help="folder of a few validation images (optional)")
    p.add_argument("--minutes", type=float, default=10.0, help="total for all models (default 10)")
    p.add_argument("--batch", type=int, default=0, help="patches per step (default: each model's own)")
    p.add_argument("--threads", type=int, default=4, help="CPU threads per run (default 4)")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: a smoke run
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)
    models = default_models()
    if not models:
        print("error: no default models in the weights registry", file=sys.stderr)
        return 2
    share = a.minutes / len(models)
    failed = []
    for name, entry, wfile in models:
        cmd = command(entry, wfile, a, share)
        print(f"# {name}: {share:.1f} min -> {a.out / subfolder(entry)}", flush=True)
        print(shlex.join(cmd), flush=True)
        if not a.dry_run and run_one(cmd, share * 60 + GRACE_S) != 0:
            failed.append(name)
    if failed:
        print(f"error: training failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

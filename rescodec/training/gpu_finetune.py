"""Fine-tune the default models on one GPU inside a fixed time, from a small data subset.

    python -m rescodec.training.gpu_finetune --data subset/ --out runs/gpu [--model NAME] [--minutes 10]

For each default model in the weights registry (one per scale, and per way of
storing the LR; or the one --model names), this runs `python -m rescodec.training
--device cuda` from that model's weights (--init-from) with the model's own flow
config and training settings (lr, batch, patch, loss weights, LR step and colour
space, mask threshold, ...).  A model with a restoration head (head.py) is
two stages: its base flow is fine-tuned as above (from the base model's own
settings), exported as `<base>-ft` into OUT/weights (a copy of the installed
weights, so nothing installed changes), and the head is then trained again on
that flow (`python -m rescodec.training.head --device cuda`), from the model's
own head.  An x1 model (the photo at full size, no flow) is its head alone,
trained again on full-size AVIF decodes; x1-avif-v1, which has none, is left
out.  --minutes is the total: each model gets an equal share, a head model
gives --head-share of its share to the head; a flow's cosine schedule runs over 90 %
of its time, a head's over what is left of its share once its crops have gone
through the codec (in --workers processes), less 20 s to save.  A run past its
time plus a minute gets SIGTERM (it saves, then stops); so does the run in
progress when this command gets SIGTERM, SIGINT or SIGHUP, which then stops.

Checkpoints land in one folder, one subfolder per scale: OUT/x2/checkpoint.pt,
OUT/x4/..., (OUT/x4-avif/... for a default trained for the AVIF LR, and
OUT/x2-avif-head/... for its head).  Export one with
`rescodec.training.train.export_run`.

A data subset: a few hundred photos copied to a folder, each at least as large
as the largest patch (192 px at x16), e.g. BSDS500 (29 MB, research use only).
Where the GPU machine has the checkout but not the datasets, copy it into
.data/ (which git ignores: the images are never committed) and take that
folder along:

    mkdir -p .data/subset && cp ../shared/datasets/train/bsds500/*.jpg .data/subset/
    python -m rescodec.training.gpu_finetune --data .data/subset --out runs/gpu

The CPU's cores do the AVIF round trips of training (--codec-workers threads
per run) and the head's crops: on a GPU machine those, not the GPU, set the
pace.  What is tested, on the CPU: the argument parsing (--help), the commands it
would run (--dry-run), and a tiny run of both stages (--device cpu).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

from .. import stop_signals
from ..flow import FlowConfig
from .head import FROM_BASE, HeadConfig
from .train import HEAD_FIELDS, OneLineParser, TrainConfig

# set here for this job, never copied from the model's own run
OWN = {"data", "val", "init_from", "minutes", "schedule_minutes", "steps", "device",
       "threads", "val_every", "save_every_s", "codec_workers"}
HEAD_OWN = {"data", "init_from", "minutes", "device", "threads", "workers", "base_model",
            "eval_every_s", *FROM_BASE}
SCHEDULE_SHARE = 0.9   # of each model's minutes; the rest: start-up, validation, save
HEAD_SAVE_S = 20       # a head's training ends this long before its share does: evaluation, save
GRACE_S = 60           # past its share, a run gets SIGTERM (it saves, then stops)


def default_models(only: str = "") -> list[tuple[str, dict, Path]]:
    """(name, manifest entry, weights file) of each default model (or of `only`), by scale.
    A default for a range of LR qualities only (`lr_qualities`, weights.default_model)
    shares its scale's flow or head and run folder, so it is left out: `--model` takes
    it.  A model with nothing to learn (x1 with no head) is left out too."""
    from .. import weights
    folder = weights.weights_dir()
    rows = [(n, e, folder / e["file"]) for n, e in weights.manifest().items()
            if ((e.get("default") and "lr_qualities" not in e and not only) or n == only)
            and (e["scale"] != 1 or weights.has_head(e))]
    return sorted(rows, key=lambda r: (r[1]["scale"], r[0]))


def base_of(entry: dict) -> str:
    """The base model of a model with a restoration head, else ''."""
    return entry.get("train_config", {}).get("base_model", "")


def subfolder(entry: dict) -> str:
    avif = entry.get("train_config", {}).get("lr_codec", "lossless") == "avif"
    return f"x{entry['scale']}" + ("-avif" if avif else "")


def flags(cls, values: dict, skip=()) -> list[str]:
    """A dataclass's fields in `values` as training CLI flags (list fields left out)."""
    out = []
    for f in fields(cls):
        if f.name in skip or f.name not in values or isinstance(values[f.name], (list, dict)):
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(values[f.name], bool):   # --name / --no-name (argparse's BooleanOptionalAction)
            out.append(flag if values[f.name] else f"--no-{flag[2:]}")
        else:
            out += [flag, str(values[f.name])]
    return out


def command(entry: dict, weights_file: Path, a, minutes: float) -> list[str]:
    """The training command that fine-tunes one model's flow for `minutes`."""
    from .. import weights
    run = dict(entry.get("train_config", {}))
    for k in ("batch", "patch", "lr"):
        if getattr(a, k):
            run[k] = getattr(a, k)
    if run.get("anchor") and not Path(run["anchor"]).is_absolute():   # "weights/x.pt": the installed model
        run["anchor"] = str(weights.weights_dir() / Path(run["anchor"]).name)
    cmd = [sys.executable, "-m", "rescodec.training", "--out", str(a.out / subfolder(entry)),
           "--data", str(a.data)]
    if a.val:
        cmd += ["--val", str(a.val)]
    cmd += flags(FlowConfig, entry["config"], skip=HEAD_FIELDS)
    cmd += flags(TrainConfig, run, skip=OWN)
    cmd += ["--init-from", str(weights_file), "--device", a.device, "--threads", str(a.threads),
            "--codec-workers", str(a.codec_workers),
            "--steps", "1000000", "--minutes", f"{minutes:.2f}",
            "--schedule-minutes", f"{minutes * SCHEDULE_SHARE:.2f}",
            "--val-every", "1000000000", "--save-every-s", "120"]
    return cmd


def head_command(entry: dict, weights_file: Path, base: str, a, minutes: float) -> list[str]:
    """The command that trains the head of `entry` again, on the flow `base`,
    ending by `minutes` from now whatever its crops' preparation takes."""
    return [sys.executable, "-m", "rescodec.training.head", "--out", str(a.out / (subfolder(entry) + "-head")),
            "--data", str(a.data), "--base-model", base, *flags(HeadConfig, entry["train_config"], skip=HEAD_OWN),
            "--init-from", str(weights_file), "--device", a.device, "--threads", str(a.threads),
            "--workers", str(a.workers), "--minutes", f"{minutes:.2f}",
            "--until", f"{time.time() + minutes * 60 - HEAD_SAVE_S:.0f}", "--eval-every-s", "1000000"]


class Stopped(Exception):
    """A stop signal, passed on to the training in progress, which has ended."""


def run_one(cmd: list[str], limit_s: float, env=None) -> int:
    """Run one training; past `limit_s` send SIGTERM (it saves and stops).
    SIGTERM, SIGINT or SIGHUP to this process is passed on to it, and once
    it has ended (saving what it trained), Stopped is raised: no training
    goes on alone."""
    print(shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env)
    got = []

    def pass_on(signum, _):   # a Ctrl-C the terminal sent it too is one more stop, no harm
        got.append(signum)
        proc.send_signal(signum)
    old = {sig: signal.signal(sig, pass_on) for sig in stop_signals.STOP
           if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    if got:
        raise Stopped(got[0])
    return rc


def fine_tune_with_head(name: str, entry: dict, wfile: Path, a, share: float) -> bool:
    """Stage 1: the base flow; stage 2: the head on it (module docstring)."""
    from .. import weights
    base = base_of(entry)
    base_entry = weights.entry(base)
    flow_min, head_min = share * (1 - a.head_share), share * a.head_share
    folder = a.out / "weights"
    tuned = f"{base}-ft"
    print(f"# {name}: base flow {base}, {flow_min:.1f} min -> {a.out / subfolder(entry)}", flush=True)
    cmd = command(base_entry, weights.weights_dir() / base_entry["file"], a, flow_min)
    hcmd = head_command(entry, wfile, tuned, a, head_min)
    head_line = f"# {name}: head on {tuned}, {head_min:.1f} min -> {a.out / (subfolder(entry) + '-head')}"
    if a.dry_run:
        print(shlex.join(cmd), head_line, shlex.join(hcmd), sep="\n")
        return True
    if run_one(cmd, flow_min * 60 + GRACE_S) != 0:
        return False
    if not folder.exists():
        shutil.copytree(weights.weights_dir(), folder, ignore=shutil.ignore_patterns("__*"))
    env = {**os.environ, "RESCODEC_WEIGHTS": str(folder)}
    # the tuned flow decodes with its base's defaults (an entry's own mask threshold wins)
    subprocess.run([sys.executable, "-c", "import sys, json; from pathlib import Path; "
                    "from rescodec.training.train import export_run; from rescodec import weights; "
                    "export_run(Path(sys.argv[1]), sys.argv[2], None, default=False); "
                    "weights.update_entry(sys.argv[2], **json.loads(sys.argv[3]))",
                    str(a.out / subfolder(entry)), tuned,
                    json.dumps({k: base_entry[k] for k in ("mask_threshold", "temperature") if k in base_entry})],
                   env=env, check=True)
    print(head_line, flush=True)
    hcmd = head_command(entry, wfile, tuned, a, head_min)   # its end counted from now
    return run_one(hcmd, head_min * 60 + GRACE_S, env) == 0


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m rescodec.training.gpu_finetune",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="folder of training photos (a small subset)")
    p.add_argument("--out", required=True, type=Path,
                   help="checkpoints go to OUT/x<scale>[-avif][-head]/, tuned flows to OUT/weights")
    p.add_argument("--val", type=Path, help="folder of a few validation images (optional)")
    p.add_argument("--model", default="", help="fine-tune this registered model only (default: every default)")
    p.add_argument("--minutes", type=float, default=10.0, help="total for all models (default 10)")
    p.add_argument("--head-share", type=float, default=0.35,
                   help="share of a head model's minutes for its head (default 0.35)")
    p.add_argument("--batch", type=int, default=0, help="patches per step (default: each model's own)")
    p.add_argument("--patch", type=int, default=0, help="HR patch side (default: each model's own)")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate of the flow (default: each model's own)")
    p.add_argument("--threads", type=int, default=4, help="torch CPU threads per run (default 4)")
    p.add_argument("--codec-workers", type=int, default=6, help="AVIF round-trip threads per flow run (default 6)")
    p.add_argument("--workers", type=int, default=6, help="processes for the head's crops (default 6)")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: a smoke run
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)
    models = default_models(a.model)
    if not models:
        from .. import weights
        what = (f"{a.model} has nothing to train (no restoration head)" if a.model in weights.manifest()
                else f"{f'no model {a.model}' if a.model else 'no default models'} in the weights registry")
        print(f"error: {what}", file=sys.stderr)
        return 2
    if a.minutes <= 0:
        print("error: --minutes must be above 0", file=sys.stderr)
        return 2
    if not 0 < a.head_share < 1:
        print("error: --head-share must be between 0 and 1", file=sys.stderr)
        return 2
    share = a.minutes / len(models)
    try:
        failed = fine_tune_all(models, a, share)
    except Stopped as e:
        print(f"stopped by {signal.Signals(e.args[0]).name}, passed on to the run in progress",
              file=sys.stderr)
        return 128 + e.args[0]
    if failed:
        print(f"error: training failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def fine_tune_all(models, a, share: float) -> list[str]:
    """Each model in turn -> the names of those whose training failed."""
    failed = []
    for name, entry, wfile in models:
        if base_of(entry):
            ok = fine_tune_with_head(name, entry, wfile, a, share)
        else:   # one run: a flow, or an x1 model's head alone (on full-size AVIF decodes)
            x1 = entry["scale"] == 1
            cmd = head_command(entry, wfile, "", a, share) if x1 else command(entry, wfile, a, share)
            where = a.out / (subfolder(entry) + ("-head" if x1 else ""))
            print(f"# {name}: {'head, ' if x1 else ''}{share:.1f} min -> {where}", flush=True)
            if a.dry_run:
                print(shlex.join(cmd))
            ok = a.dry_run or run_one(cmd, share * 60 + GRACE_S) == 0
        if not ok:
            failed.append(name)
    return failed


if __name__ == "__main__":
    sys.exit(main())

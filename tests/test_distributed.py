"""Training under torch.distributed (DDP, gloo on the CPU): torchrun runs it,
two ranks' averaged gradients equal one process's, and the GPU fine-tune
script parses its arguments.  All on the CPU, tiny models."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from conftest import gradient_image
from rescodec.flow import FlowConfig
from rescodec.training import train as T
from rescodec.weights import load_checkpoint

FLOW = FlowConfig(scale=2, width=8, blocks_per_level=1, prior_width=8, prior_blocks=1, b_scale=0.03)
CFG = T.TrainConfig(patch=32)    # back loss l1: a mean over the batch, like every other term


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    return env


def test_torchrun_trains_two_processes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(gradient_image(64, 64, seed=i)).save(data / f"{i}.png")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rescodec.training", "--out", str(out), "--data", str(data), "--scale", "2",
           "--width", "8", "--blocks-per-level", "1", "--patch", "32", "--batch", "2",
           "--steps", "3", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    log = r.stdout
    assert "world 2 (gloo), effective batch 4" in log and "| world 2 |" in log, log
    assert log.count("saved ") == 1, log          # rank 0 alone writes
    model, state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 3
    assert state["train_config"]["batch"] == 2


def _patches():
    """A fixed batch of 4 patches with edges and texture."""
    img = gradient_image(64, 64, seed=3)
    img[20:40, 10:50] = 255 - img[20:40, 10:50]
    return np.stack([img[:32, :32], img[32:, :32], img[:32, 32:], img[32:, 32:]])


def _model():
    torch.manual_seed(0)
    model = T.RescaleFlow(FLOW)
    with torch.no_grad():          # off the zero init, so every weight has a gradient
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.to(memory_format=torch.channels_last)


def _rank_gradients(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        net = torch.nn.parallel.DistributedDataParallel(T.LossNet(_model(), CFG))
        T.backward_on(net, _patches()[2 * rank:2 * rank + 2], T.MaskParams(), True)
        grads = {n: p.grad for n, p in net.module.flow.named_parameters()}
        torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
        del net, grads           # DDP's reducer holds the group (close_distributed)
        dist.barrier()
    finally:
        T.close_distributed()


def test_two_ranks_average_to_the_one_process_gradient(tmp_path):
    """Same seed, same total batch of 4: ranks 0 and 1 each take half, DDP
    averages; that is the gradient one process gets from all 4."""
    mp.spawn(_rank_gradients, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    torch.set_num_threads(1)
    model = _model()
    T.backward_on(T.LossNet(model, CFG), _patches(), T.MaskParams(), True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for n, p in model.named_parameters():
        assert torch.equal(ranks[0][n], ranks[1][n]), n          # all-reduced: one gradient
        assert torch.allclose(ranks[0][n], p.grad, atol=1e-5, rtol=1e-4), n
    assert max(p.grad.abs().max().item() for p in model.parameters()) > 1e-3


def _rank_agree(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        got = T.agree(rank == 1, 10.0 + rank, torch.device("cpu"), cpu_s=1.0 + rank)
        Path(out_dir, f"agree{rank}.json").write_text(json.dumps(got))
    finally:
        T.close_distributed()


def test_ranks_agree_on_stopping_rank_0s_clock_and_the_cpu_of_all(tmp_path):
    """Under torchrun only rank 0's CPU seconds reached the checkpoint, about
    half of a 2-process run's."""
    mp.spawn(_rank_agree, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    for r in range(2):
        assert json.loads((tmp_path / f"agree{r}.json").read_text()) == [True, 10.0, 3.0]


def test_the_loss_stays_on_the_model_device():
    """A CPU stand-in for a GPU run: on the meta device any tensor left on the
    CPU is an error, as it would be on CUDA."""
    net = T.LossNet(T.RescaleFlow(FLOW).to("meta"), CFG)
    loss, parts = T.backward_on(net, _patches(), T.MaskParams(), True, torch.device("meta"))
    assert loss.device.type == "meta" and set(parts) == {"forw", "back", "bam", "latent"}


def test_the_ycc_rate_loss_stays_on_the_model_device():
    cfg = T.TrainConfig(patch=32, lr_step=4, lr_space="ycc", lambda_rate=0.05)
    net = T.LossNet(T.RescaleFlow(FLOW).to("meta"), cfg)
    T.backward_on(net, _patches(), T.MaskParams(), True, torch.device("meta"))


def test_device_is_checked():
    with pytest.raises(ValueError, match="--device"):
        T.TrainConfig(device="gpu").validate(2)
    if not torch.cuda.is_available():
        assert T.main(["--out", "unused", "--device", "cuda"]) == 2


def test_gpu_finetune_help_and_dry_run(tmp_path, capsys):
    from rescodec import weights
    from rescodec.training import gpu_finetune as G
    with pytest.raises(SystemExit) as e:
        G.main(["--help"])
    assert e.value.code == 0 and "--minutes" in capsys.readouterr().out
    assert G.main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--minutes", "8",
                   "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cmds = [line for line in lines if not line.startswith("#")]
    models = G.default_models()
    heads = [m for m in models if G.base_of(m[1])]
    assert len({G.subfolder(m[1]) for m in models}) == len(models)   # one run folder each
    assert len(cmds) == len(models) + len(heads) and heads   # a head model: flow, then head
    share = 8 / len(models)
    for name, entry, wfile in models:
        base = G.base_of(entry)
        flow = weights.entry(base) if base else entry
        cmd = next(c for c in cmds if f"--out {tmp_path / 'o' / G.subfolder(entry)} " in c)
        assert "-m rescodec.training " in cmd and "--device cuda" in cmd
        assert f"--scale {entry['scale']} " in cmd
        assert f"--init-from {weights.weights_dir() / flow['file']}" in cmd
        assert f"--minutes {share * (1 - 0.35 if base else 1):.2f}" in cmd
        if base:
            head = next(c for c in cmds if "-m rescodec.training.head " in c
                        and f"--out {tmp_path / 'o' / G.subfolder(entry)}-head " in c)
            assert f"--base-model {base}-ft " in head and f"--init-from {wfile} " in head
            assert f"--minutes {share * 0.35:.2f}" in head and "--until " in head
    assert not (tmp_path / "o").exists()     # a dry run runs nothing
    assert G.main(["--data", "d", "--out", "o", "--model", "no-such-model", "--dry-run"]) == 2


def test_gpu_finetune_passes_a_stop_on_and_waits_for_the_training(tmp_path):
    """Ctrl-C gave a traceback, and SIGTERM to the job left its training
    running alone after the job had gone."""
    import signal
    import threading
    from rescodec.training import gpu_finetune as G
    before = signal.getsignal(signal.SIGTERM)
    mark = tmp_path / "saved"
    child = [sys.executable, "-c", "import signal, sys, time, pathlib\n"
             "def bye(n, _):\n    pathlib.Path(sys.argv[1]).write_text(str(n)); sys.exit(128 + n)\n"
             "signal.signal(signal.SIGTERM, bye)\nsignal.signal(signal.SIGINT, bye)\n"
             "print('ready', flush=True)\ntime.sleep(60)", str(mark)]
    for sig in (signal.SIGTERM, signal.SIGINT):   # SIGINT to the job alone (kill -INT), not the terminal's
        threading.Timer(1.5, os.kill, (os.getpid(), sig)).start()
        with pytest.raises(G.Stopped) as e:
            G.run_one(child, 30)
        assert e.value.args[0] == sig and mark.read_text() == str(int(sig))
    assert signal.getsignal(signal.SIGTERM) == before   # this process's own handler is back


def test_gpu_finetune_trains_an_x1_model_as_its_head_alone(tmp_path, capsys):
    from PIL import Image
    from conftest import gradient_image
    from rescodec import weights
    from rescodec.training import gpu_finetune as G
    assert G.main(["--data", "d", "--out", "o", "--model", "rescodec-x1-avif-v1", "--dry-run"]) == 2
    assert "nothing to train" in capsys.readouterr().err
    name = "rescodec-x1-avif-v5"
    assert G.main(["--data", "d", "--out", str(tmp_path / "o"), "--model", name, "--dry-run"]) == 0
    cmds = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(cmds) == 1 and "-m rescodec.training.head " in cmds[0] and "--scale 1 " in cmds[0]
    assert f"--init-from {weights.weights_dir() / weights.entry(name)['file']} " in cmds[0]
    d = tmp_path / "d"
    d.mkdir()
    for i in range(2):
        Image.fromarray(gradient_image(200, 200, seed=i)).save(d / f"{i}.png")
    assert G.main(["--data", str(d), "--out", str(tmp_path / "o"), "--model", name, "--minutes", "0.1",
                   "--device", "cpu", "--threads", "1", "--workers", "1", "--batch", "2"]) == 0
    head = torch.load(tmp_path / "o" / "x1-avif-head" / "checkpoint.pt", weights_only=False)
    assert head["train_config"]["scale"] == 1 and head["history"]


def test_gpu_finetune_runs_both_stages_of_a_head_model(tmp_path, monkeypatch):
    """A tiny CPU run of the GPU job: the base flow fine-tuned and exported into
    OUT/weights (the installed weights untouched), then the head trained on it."""
    from PIL import Image
    from conftest import gradient_image
    from rescodec import weights
    from rescodec.training import gpu_finetune as G
    name, entry, _ = next(m for m in G.default_models() if G.base_of(m[1]))
    installed = (weights.weights_dir() / weights.MANIFEST).read_bytes()
    d = tmp_path / "d"
    d.mkdir()
    for i in range(2):
        Image.fromarray(gradient_image(200, 200, seed=i)).save(d / f"{i}.png")
    out = tmp_path / "o"
    assert G.main(["--data", str(d), "--out", str(out), "--model", name, "--minutes", "0.2",
                   "--device", "cpu", "--threads", "1", "--codec-workers", "2", "--workers", "1",
                   "--batch", "2"]) == 0
    flow = torch.load(out / G.subfolder(entry) / "checkpoint.pt", weights_only=False)
    head = torch.load(out / (G.subfolder(entry) + "-head") / "checkpoint.pt", weights_only=False)
    assert flow["step"] > 0 and flow["train_config"]["device"] == "cpu"
    assert head["train_config"]["base_model"] == G.base_of(entry) + "-ft" and head["history"]
    tuned = json.loads((out / "weights" / weights.MANIFEST).read_text())["models"][G.base_of(entry) + "-ft"]
    base = weights.entry(G.base_of(entry))
    assert tuned.get("mask_threshold") == base.get("mask_threshold")   # decodes as its base does
    for k, v in flow["model"].items():   # the head trained on the tuned flow, which it carries
        assert torch.equal(head["model"][k], v.half().float()) or k.startswith("prior."), k
    assert (weights.weights_dir() / weights.MANIFEST).read_bytes() == installed


def test_gpu_finetunes_commands_parse_for_every_model_it_takes(tmp_path, capsys):
    """Each command the job would run is one its trainer reads: a flag it
    does not know (`--dihedral True`) would fail only on the GPU machine.
    Each is run with a value past its range, so that it stops after parsing."""
    import shlex
    from rescodec import weights
    from rescodec.training import gpu_finetune as G, head
    names = [n for n in weights.manifest() if G.default_models(n)]
    assert "rescodec-x4-avif-v5" in names and "rescodec-x1-avif-v8" in names
    for name in names:
        assert G.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--model", name, "--dry-run"]) == 0
        for line in capsys.readouterr().out.splitlines():
            if line.startswith("#"):
                continue
            cmd = shlex.split(line)
            if "--base-model" in cmd:   # the tuned flow of stage 1 is not there yet: its base stands in
                i = cmd.index("--base-model") + 1
                cmd[i] = cmd[i].removesuffix("-ft")
            trainer, stop, said = ((head.main, ["--minutes", "-1"], "--minutes must be above 0")
                                   if cmd[2] == "rescodec.training.head" else
                                   (T.main, ["--steps", "0"], "--steps must be at least 1"))
            assert trainer(cmd[3:] + stop) == 2, (name, line)
            assert said in capsys.readouterr().err, (name, line)

"""The restoration head (restore.py): the flow stays invertible, an untrained
head is the identity, the decoder's tiled head is bit-exact at any thread
count, and the head trainer writes a checkpoint that exports and decodes."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import rescodec
from rescodec import codec, container, tiling, weights
from rescodec.flow import FlowConfig, RescaleFlow
from rescodec.latent import DecoderInput
from rescodec.training import head as head_training
from rescodec.training.train import export_run

from conftest import gradient_image, photo_folder


def headed(scale=2, seed=0, **shape):
    torch.manual_seed(seed)
    net = RescaleFlow(FlowConfig(scale=scale, head_width=8, **{"head_blocks": 2, **shape})).eval()
    with torch.no_grad():   # a head that is not the identity
        for p in net.head.parameters():
            p.normal_(0, 0.05)
    return net


def test_head_is_outside_the_invertible_path():
    net = headed()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert (net.inverse(net(x)) - x).abs().max() < 1e-5
        assert (net.restore(x) - x).abs().max() > 1e-3


def test_untrained_head_is_the_identity():
    net = RescaleFlow(FlowConfig(scale=4, head_width=8)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.restore(x), x)


def test_a_deeper_head_grown_from_a_shallower_starts_as_it():
    small = headed().head
    deep = RescaleFlow(FlowConfig(scale=2, head_width=8, head_blocks=4)).head
    assert deep.load_grown(small.state_dict()) == 2
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(deep(x), small(x))
    with pytest.raises(ValueError, match="does not fit"):
        small.load_grown(deep.state_dict())
    with pytest.raises(ValueError, match="not a head of this shape: conv_in.bias"):
        deep.load_grown({k: v for k, v in small.state_dict().items() if k != "conv_in.bias"})
    wide = RescaleFlow(FlowConfig(scale=2, head_width=16, head_blocks=4)).head
    with pytest.raises(ValueError, match="not a head of this shape: size mismatch"):
        wide.load_grown(small.state_dict())


@pytest.mark.parametrize("dilated, dilation", [(0, 1), (1, 2), (2, 4)])
def test_head_reach_is_what_an_output_pixel_reads(dilated, dilation):
    """A change to one LR pixel moves outputs exactly head_reach LR pixels
    away each side and no further (the tiles' context is this reach)."""
    net = headed(head_blocks=3, head_dilated=dilated, head_dilation=dilation)
    assert net.head_reach == 2 * (3 - dilated + dilated * dilation) + 2
    x = torch.rand(1, 3, 2 * 64, 2 * 64, dtype=torch.float64)
    head = net.head.double()
    bumped = x.clone()
    bumped[0, :, 2 * 32, 2 * 32] += 1
    with torch.no_grad():
        moved = (head(bumped) - head(x)).abs().sum(1)[0].reshape(64, 2, 64, 2).sum((1, 3)) > 0
    rows, cols = np.nonzero(moved.numpy())
    r = net.head_reach
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (32 - r, 32 + r, 32 - r, 32 + r)


def test_a_dilated_head_grown_from_a_plain_one_starts_as_it():
    small = headed().head
    grown = RescaleFlow(FlowConfig(scale=2, head_width=8, head_blocks=4, head_dilated=2,
                                   head_dilation=4)).head
    assert grown.load_grown(small.state_dict()) == 2
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(grown(x), small(x))
    with pytest.raises(ValueError, match="invalid flow config"):
        FlowConfig(scale=2, head_width=8, head_blocks=2, head_dilated=3).validate()


@pytest.mark.parametrize("dilated", [0, 2])
def test_tiled_head_equals_the_whole_image_at_any_thread_count(monkeypatch, dilated):
    """The head's tiles, whatever their size, and torch's thread count do not
    change a pixel (tiling.restore_rgb relies on it)."""
    net = headed(head_dilated=dilated, head_dilation=3)
    with torch.no_grad():
        for block in net.head.body:     # a head that changes the picture a lot
            torch.nn.init.normal_(block[2].weight, std=0.05)
        torch.nn.init.normal_(net.head.conv_out.weight, std=0.05)
    rgb = gradient_image(2 * 100, 2 * 140)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(tiling.restore_rgb(net, rgb))     # one tile
        monkeypatch.setattr(tiling, "HEAD_CORE_LR", 32)   # 4 x 5 tiles
        outs.append(tiling.restore_rgb(net, rgb))
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    diff = np.abs(outs[0].astype(int) - rgb.astype(int))
    assert diff.mean() > 1   # the head does change the picture


def test_decoder_runs_the_head():
    net = headed()
    lr = gradient_image(24, 40).astype(np.float32)
    dec_in = DecoderInput(net, np.zeros((24, 40), np.uint8), 1, 0, 0.0)
    out = tiling.inverse_rgb(net, lr, dec_in)
    head, net.head = net.head, None
    plain = tiling.inverse_rgb(net, lr, dec_in)
    net.head = head
    assert np.array_equal(out, tiling.restore_rgb(net, plain))


def test_head_training_exports_a_model_that_decodes(tmp_path, own_weights, photo):
    """A tiny head run on a shipped x4 model: checkpoint with both configs,
    export into a copy of the weights, and a file that names it decodes."""
    data = photo_folder(tmp_path / "photos")
    base = weights.default_model(4, "avif")
    assert head_training.main(["--base-model", base, "--data", str(data), "--out", str(tmp_path / "run"),
                               "--minutes", "0.05", "--crop", "64", "--patch", "32", "--batch", "2",
                               "--width", "8", "--blocks", "1", "--val-fraction", "0.3"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["flow_config"]["head_width"] == 8 and state["train_config"]["base_model"] == base
    assert state["history"][-1]["step"] > 0
    # the first point is the starting head's: an untrained head is the identity
    assert state["history"][0]["step"] == 0 and state["history"][0]["gain_db"] == 0
    e = export_run(tmp_path / "run", "tiny-head", None, default=False)
    assert e["init_from_model"] == base and e["cpu_hours_total"] >= weights.entry(base)["cpu_hours"]
    assert weights.card("tiny-head").defaults.temperature == weights.card(base).defaults.temperature
    import json
    from click.testing import CliRunner
    from rescodec.cli import main
    rows = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)
    row = next(r for r in rows if r["name"] == "tiny-head")
    assert row["restoration_head"] and row["base_model"] == base and not row["default"]
    rsc = rescodec.encode(photo, model="tiny-head", lr_quality=20)
    out, _, hd = codec.decode_array(rsc)
    assert hd.model == "tiny-head" and out.shape == photo.shape
    # the head changes the decoder, not the encoder: the same LR as the base model's
    plain = rescodec.encode(photo, model=base, lr_quality=20)
    lr = container.SECTION_LR
    assert container.unpack(rsc).sections[lr] == container.unpack(plain).sections[lr]


def test_head_training_ends_by_until_and_a_stop_while_preparing_says_so(tmp_path, capsys):
    """gpu_finetune's head stage was killed while its crops were still being
    prepared (its time limit counted them, its --minutes did not, and a
    SIGTERM there killed it outright); --until ends training by a wall-clock
    time, and a stop signal during the preparation is one line."""
    import signal
    import time
    data = photo_folder(tmp_path / "photos")
    base = weights.default_model(4, "avif")
    args = ["--base-model", base, "--data", str(data), "--minutes", "5", "--crop", "64", "--patch", "32",
            "--batch", "2", "--width", "8", "--blocks", "1", "--val-fraction", "0.3"]
    t = time.time()
    assert head_training.main(args + ["--out", str(tmp_path / "a"), "--until", str(time.time() - 1)]) == 0
    assert time.time() - t < 60 and "no time left to train" in capsys.readouterr().out
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert state["history"][-1]["step"] == 0
    cfg = head_training.HeadConfig(base_model=base, data=[str(data)], crop=64, crops_per_photo=2)
    with pytest.raises(head_training.Stopped, match=r"stopped by SIGTERM .* \(1 of \d+\): nothing trained"):
        head_training.prepare(cfg, __import__("random").Random(0), stop=[signal.SIGTERM])


def test_a_stop_that_kills_the_crop_workers_is_a_stop_not_a_traceback(tmp_path, monkeypatch):
    """A stop sent to the whole process group (a scheduler's SIGTERM, Ctrl-C
    while the workers start) killed them and broke the pool: a traceback."""
    import concurrent.futures
    import random
    import signal
    from concurrent.futures.process import BrokenProcessPool
    stop = []

    class Broken:   # the pool as the signal leaves it
        def __init__(self, *a, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def map(self, *a, **kw):
            stop.append(signal.SIGTERM)
            raise BrokenProcessPool("a worker died")
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Broken)
    cfg = head_training.HeadConfig(base_model="", data=[str(photo_folder(tmp_path / "p"))], crop=64,
                                   crops_per_photo=2, workers=2)
    with pytest.raises(head_training.Stopped, match="stopped by SIGTERM"):
        head_training.prepare(cfg, random.Random(0), stop)
    Broken.map = lambda *a, **kw: (_ for _ in ()).throw(BrokenProcessPool("a worker died"))
    with pytest.raises(BrokenProcessPool):   # with no stop asked for, it is what it is
        head_training.prepare(cfg, random.Random(0), [])


def test_head_trainings_cpu_time_counts_its_worker_processes():
    """A head's CPU-hours left out the crops' preparation in --workers processes."""
    import subprocess
    import sys
    before = head_training.cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                    "while time.process_time() - t < 0.5: pass"], check=True)
    assert head_training.cpu_seconds() - before >= 0.45


def test_head_trainer_refuses_an_init_head_of_other_dilations(tmp_path, capsys):
    """Dilation does not change a weight's shape, so the trainer checks it:
    a dilated head does not load into a plain one; a missing file is one line."""
    from dataclasses import asdict
    cfg = FlowConfig(scale=4, head_width=8, head_blocks=2, head_dilated=1, head_dilation=2)
    torch.save({"flow_config": asdict(cfg), "model": RescaleFlow(cfg).state_dict()}, tmp_path / "dil.pt")
    data = photo_folder(tmp_path / "photos")
    base = weights.default_model(4, "avif", 30)
    args = ["--base-model", base, "--data", str(data), "--out", str(tmp_path / "run"), "--width", "8"]
    assert head_training.main(args + ["--blocks", "2", "--init-from", str(tmp_path / "dil.pt")]) == 2
    assert "other dilations" in capsys.readouterr().err
    # the same shapes with the same dilations pass the check (and stop at once)
    assert head_training.main(args + ["--blocks", "3", "--dilated", "2", "--dilation", "2", "--init-from",
                                      str(tmp_path / "dil.pt"), "--minutes", "0.001", "--crop", "64",
                                      "--patch", "32", "--batch", "2", "--val-fraction", "0.3"]) == 0
    capsys.readouterr()
    assert head_training.main(args + ["--blocks", "3"]) == 2   # a run is there now: not replaced
    assert capsys.readouterr().err == f"error: {tmp_path / 'run'} already holds a run (checkpoint.pt); " \
                                      "choose another --out\n"
    args[args.index("--out") + 1] = str(tmp_path / "run2")
    assert head_training.main(args + ["--init-from", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert head_training.main(args + ["--blocks", "2", "--dilated", "3"]) == 2   # more dilated blocks than blocks
    assert "invalid flow config" in capsys.readouterr().err
    torch.save({"flow_config": asdict(cfg), "model": RescaleFlow(replace(cfg, head_width=16)).state_dict()},
               tmp_path / "wide.pt")
    assert head_training.main(args + ["--blocks", "2", "--init-from", str(tmp_path / "wide.pt"), "--dilated", "1",
                                      "--dilation", "2"]) == 2   # another width: one line, no traceback
    assert "not a head of this shape: size mismatch for" in capsys.readouterr().err


def test_head_trainer_refuses_a_lossless_model(capsys):
    lossless = weights.default_model(8, "lossless")
    assert head_training.main(["--base-model", lossless, "--data", ".", "--out", "/nonexistent"]) == 2
    assert "lossless" in capsys.readouterr().err


def test_head_trainer_refuses_a_model_that_has_a_head(capsys):
    headed_model = weights.default_model(2, "avif")
    assert weights.entry(headed_model)["config"]["head_width"]
    assert head_training.main(["--base-model", headed_model, "--data", ".", "--out", "/nonexistent"]) == 2
    assert "already has a restoration head" in capsys.readouterr().err


def test_head_crops_through_worker_processes_match_one_process(tmp_path):
    """prepare() with --workers gives the same crops, qualities and decodes as without."""
    import random
    from PIL import Image
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(2):
        Image.fromarray(gradient_image(80, 96, seed=i)).save(data / f"{i}.png")
    cfg = head_training.HeadConfig(base_model=weights.default_model(4, "avif"), data=[str(data)],
                                   crop=64, crops_per_photo=2)
    one = head_training.prepare(cfg, random.Random(5))
    many = head_training.prepare(replace(cfg, workers=2), random.Random(5))
    assert np.array_equal(one[0], many[0]) and np.array_equal(one[1], many[1])
    assert len(one[0]) == 4 and not np.array_equal(one[0], one[1])


def test_a_fast_decode_is_the_decode_without_the_head(photo):
    """decode(fast=True) skips the restoration head and nothing else: the
    head over it gives the full decode (the photo's sides are whole units),
    which is the sharper; an x1 file's fast decode is its AVIF decode."""
    from rescodec.evaluation.metrics import psnr
    rsc = rescodec.encode(photo, scale=2, lr_quality=20)
    net = weights.load_model(codec.unpack(rsc).header.model)
    assert net.head is not None
    full, fast = codec.decode_array(rsc)[0], codec.decode_array(rsc, fast=True)[0]
    assert np.array_equal(tiling.restore_rgb(net, fast), full)
    assert psnr(photo, fast) < psnr(photo, full)
    x1 = rescodec.encode(photo, scale=1, lr_quality=30)
    assert weights.load_model(codec.unpack(x1).header.model).head is not None
    assert np.array_equal(codec.decode_array(x1, fast=True)[0], codec.thumbnail(x1))
    assert np.array_equal(np.asarray(rescodec.decode(x1, fast=True)), codec.thumbnail(x1))
    for wrong in ("no", 0, None):   # "no" would be true
        with pytest.raises(ValueError, match="fast must be True or False"):
            rescodec.decode(x1, fast=wrong)


def test_decode_fast_on_the_command_line(photo, tmp_path):
    """`rescodec decode --fast` writes the fast decode, and says where the
    file's model has no head to skip."""
    import subprocess
    import sys
    from PIL import Image
    (tmp_path / "a.rsc").write_bytes(rescodec.encode(photo, scale=2, lr_quality=20))
    # x4 above LR quality 20: x4-avif-v4, which has no head (x4-avif-v5 has one for 0-20)
    (tmp_path / "b.rsc").write_bytes(rescodec.encode(photo, scale=4, lr_quality=30))
    p = subprocess.run([sys.executable, "-m", "rescodec", "decode", "--fast", str(tmp_path / "a.rsc"),
                        str(tmp_path / "b.rsc"), "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    a = np.asarray(Image.open(tmp_path / "out" / "a.decoded.png"))
    assert np.array_equal(a, codec.decode_array((tmp_path / "a.rsc").read_bytes(), fast=True)[0])
    assert "no restoration head" in p.stderr and p.stderr.count("no restoration head") == 1


def test_the_head_trainers_init_from_takes_a_name_and_refuses_what_is_not_a_model(tmp_path):
    """As the flow's trainer does: an installed model's name was "no such
    file", and an empty or garbage file a traceback."""
    from rescodec.training.train import read_init
    assert "model" in read_init("rescodec-x2-avif-v12", weights_only=True)[1]
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for init, said in (("nope", "no such file or installed model"), (str(tmp_path / "empty.pt"), "EOFError"),
                       (str(tmp_path / "junk.pt"), "not a checkpoint or weights file")):
        with pytest.raises(ValueError, match=said):
            read_init(init, weights_only=True)

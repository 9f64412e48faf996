"""benchmark.py: each subcommand runs end to end on two tiny generated images
and prints a table row with finite numbers.  Smoke tests only; the numbers
themselves belong in BENCHMARKS.md."""
import math
import os

import pytest
import torch
from PIL import Image

from rescodec import head_gain
from rescodec.evaluation import benchmark
from rescodec.flow import FlowConfig
from rescodec.training import train as T

from conftest import gradient_image


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """DIR with DIR/val holding a 64x48 and a 48x64 gradient plus noise."""
    d = tmp_path_factory.mktemp("bench")
    (d / "val").mkdir()
    Image.fromarray(gradient_image(48, 64, seed=1)).save(d / "val" / "a.png")
    Image.fromarray(gradient_image(64, 48, seed=2)).save(d / "val" / "b.png")
    return d


def _row(out: str, first: str) -> list[str]:
    """The cells of the markdown row whose first cell is `first`."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in out.splitlines() if line.startswith("|")]
    hits = [r for r in rows if r[0] == first]
    assert len(hits) == 1, out
    return hits[0]


def _finite(cell: str) -> float:
    v = float(cell.split()[0])
    assert math.isfinite(v), cell
    return v


def test_speed(data, capsys):
    benchmark.main(["speed", "--data", str(data), "--photo", str(data / "val" / "a.png"),
                    "--scale", "4", "--repeats", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "image 64x48" in out
    assert f"CPU: {benchmark.cpu()}; torch threads: 1" in out     # times name their machine
    assert f"{os.cpu_count()} CPUs, {torch.backends.cpu.get_cpu_capability()}" in benchmark.cpu()
    r = _row(out, "x4")
    enc, dec, n, bpp = _finite(r[1]), _finite(r[2]), int(r[4]), _finite(r[5])
    assert enc > 0 and dec > 0 and n > 0
    assert bpp == pytest.approx(8 * n / (64 * 48), abs=1e-4)
    assert int(r[6]) + int(r[7]) + int(r[8]) == n       # header + LR + mask = the file
    assert _finite(r[10]) > 0                           # decode --fast (x4: the same decode)


def test_speed_times_a_fast_decode_of_an_x2_file(data, capsys):
    benchmark.main(["speed", "--data", str(data), "--photo", str(data / "val" / "a.png"),
                    "--quality", "30", "--repeats", "1", "--threads", "1"])   # x2 (x1 from -q 41)
    out = capsys.readouterr().out
    assert "| decode --fast s |" in out
    r = _row(out, "-q 30")
    assert _finite(r[10]) > 0 and _finite(r[2]) > 0    # what it skips: tests/test_restore.py


def test_val(data, capsys):
    benchmark.main(["val", "--data", str(data), "--photo", str(data / "val" / "b.png"),
                    "--scale", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert out.startswith("2 images from")
    assert "decode s (48x64)" in out
    r = _row(out, "x4")
    bpp, rgb, y, ssim, jpeg, bicubic = (_finite(c) for c in r[4:10])
    assert bpp > 0 and 0 < ssim <= 1
    assert rgb > 15 and y > 15 and jpeg > 15 and bicubic > 15   # smooth ramps decode well
    assert "mean encode time per image" in out


@pytest.mark.parametrize("args, setting", [(["--quality", "75"], "-q 75"), (["--scale", "4"], "x4")])
def test_memory(capsys, args, setting):
    # the smallest size: 0.01 MP is a 122x81 image, encoded and decoded in child processes
    benchmark.main(["memory", "--mp", "0.01", *args])
    r = _row(capsys.readouterr().out, "0.0 (122x81)")
    assert r[1] == setting
    enc_s, enc_mib, dec_s, dec_mib, bpp = (_finite(c) for c in r[2:7])
    assert enc_mib > 10 and dec_mib > 10 and bpp > 0      # a real peak RSS, not 0


def test_checkpoints(data, tmp_path, capsys):
    cfg = T.TrainConfig(data=[str(data / "val")], val=[], patch=32, batch=2, steps=2,
                        threads=1, save_every_s=1e9)
    T.train(FlowConfig(scale=2, width=8, blocks_per_level=1), cfg, tmp_path / "run", log=lambda m: None)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    benchmark.main(["checkpoints", "--data", str(data), "--checkpoint", str(ckpt), "--threads", "1"])
    r = _row(capsys.readouterr().out, str(ckpt))
    assert r[1] == "2"                                   # the step
    bpp, rgb, y, ssim, jpeg, margin = (_finite(c) for c in r[5:11])
    assert bpp > 0 and 0 < ssim <= 1
    assert margin == pytest.approx(rgb - jpeg, abs=0.011)


def test_checkpoints_needs_a_path(data, capsys):
    with pytest.raises(SystemExit) as e:
        benchmark.main(["checkpoints", "--data", str(data)])
    assert e.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_lr_codecs(data, capsys):
    benchmark.main(["lr-codecs", "--photos", str(data / "val"), "--limit", "1", "--scale", "4",
                    "--threads", "1"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| x4")]
    assert [r[1] for r in rows] == ["AVIF speed 3", "AVIF speed 3, AB partitions pruned", "AVIF speed 4",
                                    "AVIF speed 6", "AVIF speed 8", "JPEG XL effort 7"]
    assert rows[0][2] == "+0.00 %"                      # the reference against itself
    assert all(math.isfinite(float(r[2].split()[0])) and float(r[3]) > 0 for r in rows)


def test_lr_cost(data, capsys):
    from rescodec import weights
    path = weights.weights_dir() / weights.entry(weights.default_model(4))["file"]
    benchmark.main(["lr-cost", "--photos", str(data / "val"), "--limit", "1", "--checkpoint", str(path),
                    "--threads", "1"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r[0] for r in rows] == ["10", "30", "50"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 and 10 < float(r[4]) < 60 for r in rows)


def test_temperature(data, capsys):
    benchmark.main(["temperature", "--data", str(data), "--quality", "10", "--t", "1",
                    "--model", "rescodec-x4-avif-v2", "--threads", "1"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| rescodec-x4-avif-v2")]
    assert [r[2] for r in rows] == ["0", "1"]          # t = 0 is always the reference
    assert rows[0][5] == "+0.00" and rows[0][7] == "-"
    assert _finite(rows[1][4]) > 10 and rows[1][7] == "2/2"   # seeds 1 and 2 draw other pixels


def test_rd_with_a_checkpoint(data, tmp_path, capsys):
    """rd.py scores a training checkpoint (complete settings, Z at t = 0) next to a registered model."""
    from rescodec.evaluation import rd
    ck = tmp_path / "x4.pt"
    fc = FlowConfig(scale=4, width=8)
    state = {"flow_config": vars(fc), "model": T.RescaleFlow(fc).state_dict(),
             "train_config": vars(T.TrainConfig())}
    import torch
    torch.save(state, ck)
    rd.main(["--data", str(data / "val"), "--out", str(tmp_path / "rd"), "--checkpoint", str(ck),
             "--scale", "4", "--scale", "2", "--qualities", "30", "--no-baselines", "--threads", "1"])
    out = capsys.readouterr().out
    assert "| x4 q30 |" in out and "| x2 q30 |" in out


def test_rd_versus_reads_a_shift_as_bd_psnr(tmp_path, capsys):
    import json
    from rescodec.evaluation import rd
    pts = lambda s, dp: [{"codec": "rescodec", "setting": f"x{s} q{q}", "bpp": 0.05 * (1 + q / 10),
                          "psnr": 20 + q / 10 + dp} for q in range(0, 100, 10)]
    ref = {"/a/p.png": pts(2, 0) + pts(4, 0), "/a/q.png": pts(2, 0)}
    test = {"/b/p.png": pts(2, 0.5) + pts(4, -1), "/b/q.png": pts(2, 0.5)}
    for name, d in (("ref", ref), ("test", test)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    rd.main(["--versus", str(tmp_path / "ref.json"), str(tmp_path / "test.json")])
    out = capsys.readouterr().out
    assert _row(out, "x2")[1:4:2] == ["+0.500", "2"] and _row(out, "x4")[1:4:2] == ["-1.000", "1"]
    assert float(_row(out, "x2")[2]) < 0 < float(_row(out, "x4")[2])


def test_rd_versus_scores_a_single_point_against_the_curve(tmp_path, capsys):
    """One test point a photo (a refined LR quality): its PSNR minus ref's curve
    at its bpp, interpolated in log-bpp; a point beyond ref's bpps is left out."""
    import json
    import math
    from rescodec.evaluation import rd
    ref = {p: [{"codec": "rescodec", "setting": f"x2 q{q}", "bpp": 0.1 * 2 ** (q / 10), "psnr": 20 + q / 10}
               for q in range(0, 50, 10)] for p in ("a.png", "b.png", "c.png")}
    at = lambda bpp, dp: [{"codec": "rescodec", "setting": "x2 q20", "bpp": bpp,
                           "psnr": 20 + 10 * math.log2(bpp / 0.1) / 10 + dp}]
    test = {"a.png": at(0.3, 0.4), "b.png": at(0.5, -0.2), "c.png": at(9.0, 1.0)}
    for name, d in (("ref", ref), ("test", test)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    rd.main(["--versus", str(tmp_path / "ref.json"), str(tmp_path / "test.json")])
    row = _row(capsys.readouterr().out.split("test minus ref")[1], "x2")
    assert row[1] == "+0.100" and row[2] == "+0.40 -0.20 -" and row[3] == "2 of 3"


def test_rd_versus_matches_photos_by_path_before_name(tmp_path, capsys):
    """Set5 and Set14 share file names: the same paths match as paths."""
    import json
    from rescodec.evaluation import rd
    pts = lambda dp: [{"codec": "rescodec", "setting": f"x2 q{q}", "bpp": 0.05 * (1 + q / 10),
                       "psnr": 20 + q / 10 + dp} for q in range(0, 100, 10)]
    ref = {"v/set5/a.png": pts(0), "v/set14/a.png": pts(0)}
    test = {"v/set5/a.png": pts(1), "v/set14/a.png": pts(3)}
    for name, d in (("ref", ref), ("test", test)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    rd.main(["--versus", str(tmp_path / "ref.json"), str(tmp_path / "test.json")])
    assert _row(capsys.readouterr().out, "x2")[1:4:2] == ["+2.000", "2"]
    (tmp_path / "other.json").write_text(json.dumps({"w/set5/a.png": pts(0), "w/set14/a.png": pts(0)}))
    with pytest.raises(SystemExit, match="not unique"):
        rd.main(["--versus", str(tmp_path / "ref.json"), str(tmp_path / "other.json")])


def test_rd_versus_takes_run_folders_and_bad_input_is_one_line(tmp_path, capsys):
    import json
    from rescodec.evaluation import rd
    pts = [{"codec": "rescodec", "setting": f"x2 q{q}", "bpp": 0.05 * (1 + q / 10), "psnr": 20 + q / 10}
           for q in range(0, 100, 10)]
    for name in ("ref", "test"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "points.json").write_text(json.dumps({"p.png": pts}))
    assert rd.main(["--versus", str(tmp_path / "ref"), str(tmp_path / "test")]) == 0
    assert _row(capsys.readouterr().out, "x2")[1] == "+0.000"
    assert rd.main(["--versus", str(tmp_path / "ref"), str(tmp_path / "none")]) == 2
    assert rd.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--model", "2=no-such-model",
                    "--scale", "2", "--no-baselines"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "no-such-model" in err and "Traceback" not in err


def test_gain_estimate_skips_scales_but_x1_and_costs_almost_nothing(data, capsys):
    benchmark.main(["gain-estimate", "--photos", str(data / "val"), "--quality", "30", "--quality", "90",
                    "--threads", "1"])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [r[0] for r in rows] == ["90"]             # -q 30 is x2: no gain map
    differ, blocks = map(int, rows[0][3].split(" of "))
    assert blocks > 0 and differ <= blocks
    assert abs(float(rows[0][4])) < 0.01 and float(rows[0][5]) > -0.05


def test_refine_gain_scores_refine_against_the_plain_curve(data, capsys):
    benchmark.main(["refine-gain", "--photos", str(data / "val"), "--quality", "20", "--refine",
                    "--threads", "1"])
    out = capsys.readouterr().out
    assert ", --refine; CPU:" in out         # bare --refine: the encoder's own, not a step count
    row = _row(out, "20")
    assert row[1] == "x2 (12)"
    assert _finite(row[2].lstrip("x")) > 0
    mean, least, most = _finite(row[3]), _finite(row[4]), _finite(row[5])
    assert least <= mean <= most
    assert 0 <= int(row[6]) <= 2 and _finite(row[7]) > 0


def test_decoders_compares_two_heads_of_one_flow_on_the_same_bytes(data, capsys):
    benchmark.main(["decoders", "--data", str(data), "--scale", "4", "--model", "rescodec-x4-avif-v4",
                    "--model", "rescodec-x4-avif-v5", "--quality", "21", "--threads", "1"])
    row = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 21 |")][0].split("|")
    assert -3 < float(row[2]) < 3 and row[5].strip().endswith(f"of {len(list((data / 'val').rglob('*.png')))}")
    with pytest.raises(SystemExit):   # x4-avif-v4 and x2-avif-v13: other flows
        benchmark.main(["decoders", "--data", str(data), "--scale", "4", "--model", "rescodec-x4-avif-v4",
                        "--model", "rescodec-x2-avif-v13", "--quality", "21"])


def test_thumbnails_scores_the_small_picture_of_every_scale(data, capsys):
    benchmark.main(["thumbnails", "--photos", str(data / "val"), "--threads", "1"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| x")]
    assert [r.split()[1] for r in rows] == ["x2", "x4", "x8", "x16"]
    assert all(0 < float(r.split("|")[-2]) < 64 for r in rows)


def test_graphics_writes_x1_for_its_graphics_and_keeps_photos(data, capsys):
    benchmark.main(["graphics", "--data", str(data), "--quality", "30", "--limit", "1", "--threads", "1"])
    out = capsys.readouterr().out
    row = _row(out, "chart")
    assert row[2].startswith("x2, ") and row[5].startswith("x1, ")
    assert _finite(row[3]) >= 4                                                     # the gap
    assert _finite(row[4]) >= head_gain.FLAT_SHARE                                 # flat share
    assert _finite(row[5].split(", ")[2]) > _finite(row[2].split(", ")[2]) + 3   # PSNR
    benchmark.main(["graphics", "--data", str(data), "--quality", "65", "--limit", "1", "--threads", "1"])
    row = _row(capsys.readouterr().out, "chart")   # x1 either way: the gain map takes out the head's ripple
    assert row[2].startswith("x1, ") and row[3] == "-" and row[5].startswith("x1, ")
    assert _finite(row[5].split(", ")[2]) > _finite(row[2].split(", ")[2]) + 1
    benchmark.main(["graphics", "--photos", str(data / "val"), "--quality", "30", "--quality", "65",
                    "--threads", "1"])
    out = capsys.readouterr().out
    assert "0 of 4 files changed by the checks" in out, out


def test_psnr_target_reaches_each_target(data, capsys):
    benchmark.main(["psnr-target", "--data", str(data), "--psnr", "30", "--threads", "1"])
    row = _row(capsys.readouterr().out, "30")
    q_mean = _finite(row[1].split(" (")[0])
    assert 0 <= q_mean <= 100 and _finite(row[2].split(" (")[0]) >= 0 and row[3] == "0"
    assert _finite(row[4].lstrip("x")) > 1 and _finite(row[5]) > 0   # -q one less is smaller


def test_bad_photos_or_options_are_one_line_not_a_traceback(tmp_path, capsys):
    """psnr-target on an empty folder ended in min() of nothing; graphics on a
    broken image in its ImageInputError's traceback."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    for args, said in ((["psnr-target", "--photos", str(tmp_path / "empty")], "no images in"),
                       (["graphics", "--photos", str(tmp_path / "bad"), "--quality", "45"], "not an image"),
                       (["graphics", "--photos", str(tmp_path / "bad"), "--quality", "101"], "not an image")):
        with pytest.raises(SystemExit) as e:
            benchmark.main(args + ["--threads", "1"])
        err = capsys.readouterr().err
        assert e.value.code == 1 and said in err and "Traceback" not in err and err.count("\n") == 1, err

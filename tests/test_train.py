"""Training: a few steps lower the loss, resume is exact, BAW switches at 30%."""
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from rescodec.training import train as T
from rescodec.flow import FlowConfig



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    for i, name in enumerate(["astronaut", "chelsea", "coffee"]):   # CC0 samples
        img = getattr(skimage.data, name)()
        Image.fromarray(img[100:196, 100:196]).save(d / f"t{i}.png")
    return d


def _cfg(data_dir, **kw):
    base = dict(data=[str(data_dir)], val=[], patch=32, batch=4, lr=1e-3, steps=60,
                val_every=1000, threads=1, save_every_s=1e9)
    base.update(kw)
    return T.TrainConfig(**base)


def test_a_few_steps_lower_the_loss(data_dir, tmp_path):
    fc = FlowConfig(scale=2, width=16, b_scale=0.03)
    cfg = _cfg(data_dir)
    rng = np.random.default_rng(5)
    sampler = T.PatchSampler(cfg.data, cfg.patch, rng)
    patches = sampler.batch(8)
    b_lr, bs = T.mask_targets(patches, 2, T.MaskParams(), fc.b_scale)
    x = T.batch_tensor(patches)

    def loss_of(model):
        with torch.no_grad():
            return sum(T.losses(model, x, b_lr, bs, cfg, False).values()).item()

    torch.manual_seed(0)
    state = T.train(fc, cfg, tmp_path / "run", log=lambda m: None)
    before = T.RescaleFlow(fc)
    after = T.RescaleFlow(fc)
    after.load_state_dict(state["model"])
    assert loss_of(after) < 0.97 * loss_of(before)   # measured: 0.94


def test_resume_restores_exact_state(data_dir, tmp_path):
    """6 steps, stop, resume to 12 == 12 steps in one go (model and optimiser)."""
    fc = FlowConfig(scale=2, width=8)
    cfg = _cfg(data_dir, steps=12)
    full = T.train(fc, cfg, tmp_path / "a", log=lambda m: None)
    half = T.train(fc, cfg, tmp_path / "b", log=lambda m: None, stop_after=6)
    assert half["step"] == 6
    torch.manual_seed(123)            # resume must not depend on the caller's RNG
    np.random.seed(123)
    resumed = T.train(fc, cfg, tmp_path / "b", resume=True, log=lambda m: None)
    assert resumed["step"] == 12
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    sa, sb = full["optim"]["state"], resumed["optim"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_the_mask_threshold_reaches_the_targets(data_dir, tmp_path, monkeypatch):
    seen = []
    real = T.mask_targets
    monkeypatch.setattr(T, "mask_targets", lambda p, s, params, b: seen.append(params.threshold) or real(p, s, params, b))
    T.train(FlowConfig(scale=2, width=8, blocks_per_level=1), _cfg(data_dir, steps=2, mask_threshold=150.0),
            tmp_path / "r", log=lambda m: None)
    assert seen and set(seen) == {150.0}


def test_the_lr_space_reaches_the_rounding_and_the_rate(data_dir, tmp_path, monkeypatch):
    """TrainConfig.lr_space is what the flow's LR is rounded in (straight-through,
    as the encoder stores it) and what the rate term measures."""
    seen = []
    real_grid, real_rate = T.lr_grid, T.rate_proxy
    monkeypatch.setattr(T, "lr_grid", lambda y, step=1, space="rgb": seen.append(("grid", space)) or real_grid(y, step, space))
    monkeypatch.setattr(T, "rate_proxy", lambda y, step=1, space="rgb": seen.append(("rate", space)) or real_rate(y, step, space))
    T.train(FlowConfig(scale=2, width=8, blocks_per_level=1),
            _cfg(data_dir, steps=2, lr_step=8, lr_space="ycc", lambda_rate=0.01), tmp_path / "r", log=lambda m: None)
    assert ("grid", "ycc") in seen and ("rate", "ycc") in seen
    assert all(space == "ycc" for _, space in seen)


def test_baw_switches_at_30_percent():
    cfg = T.TrainConfig(steps=100)
    on = [T.baw_on(s, 0.0, cfg) for s in range(100)]
    assert on.index(True) == 30 and all(on[30:])
    timed = T.TrainConfig(steps=10 ** 6, schedule_minutes=10)     # by time: 3 of 10 minutes
    assert not T.baw_on(5000, 179.0, timed) and T.baw_on(5000, 180.0, timed)


def test_time_schedule_ends_at_lr_min():
    cfg = T.TrainConfig(lr=1e-3, lr_min=1e-6, steps=10 ** 6, schedule_minutes=2)
    assert T.lr_at(10, cfg, 0.0) == pytest.approx(1e-3)
    assert T.lr_at(10, cfg, 60.0) == pytest.approx((1e-3 + 1e-6) / 2)
    assert T.lr_at(10, cfg, 500.0) == pytest.approx(1e-6)


def test_budget_stop_validates_the_last_step(tmp_path, monkeypatch):
    """A run stopped between val points still ends its curve with a val point."""
    fc = FlowConfig(scale=2, width=8, blocks_per_level=1)
    cfg = T.TrainConfig(patch=16, batch=2, steps=100, val_every=1000, threads=1)
    monkeypatch.setattr(T, "validate", lambda *a: {"psnr_rgb": 1.0, "psnr_y": 2.0})
    monkeypatch.setattr(T, "list_images", lambda folders: ["x"] if folders else [])
    monkeypatch.setattr(T, "load_rgb", lambda p: np.zeros((32, 32, 3), np.uint8))
    cfg.data, cfg.val = ["d"], ["v"]
    out = T.train(fc, cfg, tmp_path / "r", log=lambda m: None, stop_after=3)
    assert [h["step"] for h in out["history"]] == [3]


def test_lr_schedule_is_cosine():
    cfg = T.TrainConfig(lr=2e-4, lr_min=1e-6, steps=100)
    assert T.lr_at(0, cfg) == pytest.approx(2e-4)
    assert T.lr_at(100, cfg) == pytest.approx(1e-6)
    assert T.lr_at(50, cfg) == pytest.approx((2e-4 + 1e-6) / 2)


def test_lr_grid_passes_gradient():
    y = torch.tensor([0.1234, 0.5], requires_grad=True)
    q = T.lr_grid(y)
    q.sum().backward()
    assert torch.equal(y.grad, torch.ones(2))
    assert torch.allclose(q, torch.round(y.detach() * 255) / 255)


@pytest.mark.parametrize("step", [2, 3, 4, 16])
def test_lr_grid_is_what_the_codec_stores(step):
    """Training's rounding, the stored codes and the decoder's LR agree at every step."""
    from rescodec import lr_quant
    y = torch.linspace(-0.1, 1.1, 3 * 4 * 700).reshape(1, 3, 4, 700)
    q = T.lr_grid(y, step)
    codes = lr_quant.lr_codes(y, step)
    assert codes.max() == 255 // step
    lr = lr_quant.lr_from_codes(codes, step)
    assert np.array_equal(lr, (q[0].permute(1, 2, 0).detach() * 255).round().to(torch.uint8).numpy())
    assert set(np.unique(lr)) == set(range(0, 255 // step * step + 1, step))
    # nearest grid point: the error is at most half a step inside the grid's range
    inside = (y >= 0) & (y <= (255 // step) * step / 255)
    assert ((q - y).abs()[inside] <= step / 2 / 255 + 1e-6).all()


def test_rate_proxy_ranks_images_like_the_lossless_coder():
    from rescodec import lossless
    rng = np.random.default_rng(0)
    photo = skimage.data.astronaut()[::4, ::4]
    flat = np.full_like(photo, 120) + (np.arange(photo.shape[1], dtype=np.uint8) // 8)[None, :, None]
    noisy = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    imgs = [flat, photo, noisy]
    proxy = [T.rate_proxy(torch.from_numpy(i / 255.0).permute(2, 0, 1)[None]).item() for i in imgs]
    size = [len(lossless.encode(i, codecs=(lossless.JXL,))) for i in imgs]
    assert proxy == sorted(proxy) and size == sorted(size)
    # and as the calibration in BENCHMARKS.md says: bits/sample ~ 1.49 proxy + 0.88
    bits = 8 * size[1] / photo.size
    assert abs(bits - (1.49 * proxy[1] + 0.88)) < 0.35


def test_rate_term_makes_the_lr_cheaper(data_dir, tmp_path):
    fc = FlowConfig(scale=2, width=16, b_scale=0.03)
    rng = np.random.default_rng(5)
    patches = T.PatchSampler([str(data_dir)], 32, rng).batch(8)
    x = T.batch_tensor(patches)

    def lr_rate(cfg):
        torch.manual_seed(0)
        model = T.RescaleFlow(fc)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        b_lr, bs = T.mask_targets(patches, 2, T.MaskParams(), fc.b_scale)
        for _ in range(30):
            loss = sum(T.losses(model, x, b_lr, bs, cfg, False).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return T.rate_proxy(T.lr_grid(model(x)[:, :3])).item()

    plain = lr_rate(_cfg(data_dir))
    assert lr_rate(_cfg(data_dir, lambda_rate=0.5)) < plain - 0.05


def test_l2_back_loss_matches_l1_gradient_at_the_mean_error():
    """--back-loss l2: squared error scaled so that an element whose |err| is
    the mean error gets l1's gradient; larger errors get more, smaller less."""
    err = torch.tensor([0.01, -0.03, 0.05, -0.01], requires_grad=True)   # mean |err| 0.025
    weight = torch.tensor([2.0, 2.0, 3.0, 2.0])
    T.back_loss(err, weight, "l2").backward()
    g2 = err.grad.clone()
    err.grad = None
    T.back_loss(err, weight, "l1").backward()
    g1 = err.grad
    ratio = g2 / g1                               # = |err| / mean|err|
    assert torch.allclose(ratio, err.detach().abs() / 0.025, atol=1e-5)
    with pytest.raises(ValueError):
        T.back_loss(err, weight, "l3")


def test_latent_prior_trains_at_its_own_rate(data_dir, tmp_path):
    """--lr-prior: the prior's group runs at lr_prior on the same cosine, and
    training moves it off zero while the rest moves at lr."""
    fc = FlowConfig(scale=2, width=8, prior_width=8, prior_blocks=1)
    cfg = _cfg(data_dir, steps=6, lr=1e-4, lr_prior=1e-3)
    state = T.train(fc, cfg, tmp_path / "p", log=lambda m: None)
    groups = state["optim"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    assert state["model"]["prior.conv_out.weight"].abs().max() > 0


def test_every_training_option_has_a_description(capsys):
    """`python -m rescodec.training --help` describes every option."""
    with pytest.raises(SystemExit):
        T.main(["--help"])
    out = capsys.readouterr().out
    from dataclasses import fields
    from rescodec.flow import FlowConfig
    for cls in (FlowConfig, T.TrainConfig):
        helps = T.field_help(cls)
        for f in fields(cls):
            assert helps.get(f.name), f.name
            if f.name not in T.HEAD_FIELDS:   # the head is trained by training/head.py
                assert f"--{f.name.replace('_', '-')}" in out


def test_a_description_continued_on_the_next_line_is_whole():
    from rescodec.flow import FlowConfig
    assert T.field_help(FlowConfig)["scale"].endswith(
        'the "LR" is the photo and only the restoration head is learnt')
    assert T.field_help(FlowConfig)["blocks_per_level"] == "BDFlow Sec. 4.2 uses two InvBlocks per level"


def test_every_head_training_option_has_a_description(capsys):
    from dataclasses import fields
    from rescodec.training import head
    with pytest.raises(SystemExit):
        head.main(["--help"])
    out = capsys.readouterr().out
    helps = T.field_help(head.HeadConfig)
    for f in fields(head.HeadConfig):
        assert helps.get(f.name), f.name
        assert (f"--{f.name.replace('_', '-')}" in out) == ("set from the base model" not in helps[f.name])


def test_z_std_0_is_measured_as_the_forward_z_rms(data_dir, tmp_path):
    """--z-std 0: the run measures the RMS of the forward's Z on training
    patches before its first step, and every checkpoint carries it."""
    fc = FlowConfig(scale=2, width=8, z_std=0.0)
    state = T.train(fc, _cfg(data_dir, steps=1), tmp_path / "run", log=lambda m: None)
    z_std = state["flow_config"]["z_std"]
    assert 0 < z_std < 1
    # it is the spread of Z for these patches (a fresh draw, same model before its step)
    rng = np.random.default_rng(0)
    sampler = T.PatchSampler([str(data_dir)], 32, rng)
    model = T.RescaleFlow(FlowConfig(scale=2, width=8))   # untrained: the Haar transform
    assert T.measure_z_std(model, sampler) == pytest.approx(z_std, rel=0.5)


def test_z_temperatures_are_drawn_per_patch():
    cfg = T.TrainConfig(z_temperature=1.0, z_temperature_min=0.25)
    t = T.z_scales(cfg, 4096)
    assert t.shape == (4096, 1, 1, 1)
    assert 0.25 <= t.min() and t.max() <= 1.0 and abs(t.mean().item() - 0.625) < 0.02
    fixed = T.z_scales(T.TrainConfig(z_temperature=0.5, z_temperature_min=0.5), 3)
    assert torch.equal(fixed, torch.full((3, 1, 1, 1), 0.5))
    assert not T.z_scales(T.TrainConfig(), 3).any()      # the default: Z = 0
    with pytest.raises(ValueError, match="z-temperature-min"):
        T.TrainConfig(z_temperature=0.5, z_temperature_min=0.75).validate(2)


def test_a_run_saved_before_z_temperature_min_resumes_at_its_fixed_temperature(data_dir, tmp_path):
    """Runs saved before --z-temperature-min trained every patch at
    --z-temperature; resumed, they still do."""
    out = tmp_path / "old"
    T.train(FlowConfig(scale=2, width=8), _cfg(data_dir, steps=2, z_temperature=0.5), out,
            log=lambda m: None, stop_after=1)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    del state["train_config"]["z_temperature_min"]
    torch.save(state, out / "checkpoint.pt")
    seen = []
    real = T.train
    T_train = lambda fc, cfg, *a, **k: seen.append(cfg) or real(fc, cfg, *a, **k)
    import unittest.mock as mock
    with mock.patch.object(T, "train", T_train):
        assert T.main(["--out", str(out), "--resume"]) == 0
    assert seen[0].z_temperature_min == seen[0].z_temperature == 0.5


def test_init_from_keeps_the_models_z_std(data_dir, tmp_path):
    src = tmp_path / "src.pt"
    fc = FlowConfig(scale=2, width=8, z_std=0.0123)
    torch.save({"flow_config": vars(fc), "model": T.RescaleFlow(fc).state_dict()}, src)
    seen = []
    real = T.train
    import unittest.mock as mock
    with mock.patch.object(T, "train", lambda fc, cfg, *a, **k: seen.append(fc) or real(fc, cfg, *a, **k)):
        common = ["--scale", "2", "--width", "8", "--data", str(data_dir), "--patch", "32", "--batch", "2",
                  "--steps", "1", "--threads", "1", "--init-from", str(src)]
        assert T.main(common + ["--out", str(tmp_path / "a")]) == 0
        assert T.main(common + ["--out", str(tmp_path / "b"), "--z-std", "0.5"]) == 0
    assert [f.z_std for f in seen] == [0.0123, 0.5]


def test_anchor_holds_the_lr_where_the_rate_term_moves_it(data_dir, tmp_path):
    """--anchor: the LR stays near the anchor network's while the rest trains."""
    fc = FlowConfig(scale=2, width=16, b_scale=0.03)
    torch.manual_seed(0)
    start = T.RescaleFlow(fc)
    ck = tmp_path / "anchor.pt"
    torch.save({"flow_config": vars(fc), "model": start.state_dict()}, ck)
    patches = T.PatchSampler([str(data_dir)], 32, np.random.default_rng(5)).batch(8)
    x = T.batch_tensor(patches)
    b_lr, bs = T.mask_targets(patches, 2, T.MaskParams(), fc.b_scale)

    def lr_drift(cfg, anchor=None):
        model = T.RescaleFlow(fc)
        model.load_state_dict(start.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for i in range(30):
            parts = T.losses(model, x, b_lr, bs, cfg, False, anchor)
            if anchor is not None and i == 0:
                assert parts["anchor"].item() == 0      # the same network: no pull yet
            opt.zero_grad()
            sum(parts.values()).backward()
            opt.step()
        with torch.no_grad():
            return (model(x)[:, :3] - start(x)[:, :3]).pow(2).mean().item()

    free = lr_drift(_cfg(data_dir, lambda_rate=0.5))
    from rescodec.weights import load_checkpoint
    held = lr_drift(_cfg(data_dir, lambda_rate=0.5, anchor=str(ck), lambda_anchor=1000.0),
                    load_checkpoint(ck)[0])
    assert held < free / 4
    with pytest.raises(ValueError, match="go together"):
        _cfg(data_dir, anchor=str(ck)).validate(2)


def test_a_run_is_not_started_again_over_itself(data_dir, tmp_path, capsys):
    """Without --resume an existing run would be trained again from scratch;
    --resume with no run would start a fresh one with the defaults."""
    args = ["--scale", "2", "--width", "8", "--data", str(data_dir), "--patch", "32", "--batch", "2",
            "--steps", "1", "--threads", "1", "--out", str(tmp_path / "run")]
    assert T.main(args + ["--resume"]) == 2
    assert capsys.readouterr().err == f"error: --resume, but {tmp_path / 'run'} holds no checkpoint.pt\n"
    assert T.main(args) == 0
    capsys.readouterr()
    assert T.main(args) == 2
    assert "already holds a run (checkpoint.pt): continue it with --resume" in capsys.readouterr().err
    for bad, said in ((["--steps", "0"], "--steps must be at least 1"), (["--batch", "0"], "--batch must be"),
                      (["--patch", "33"], "--patch a positive multiple of 2")):
        assert T.main(args[:-1] + [str(tmp_path / "other"), *bad]) == 2
        assert said in capsys.readouterr().err


def test_resume_says_which_options_it_leaves_as_saved_and_names_resolve(data_dir, tmp_path, capsys):
    args = ["--scale", "2", "--width", "8", "--data", str(data_dir), "--patch", "32", "--batch", "2",
            "--steps", "1", "--threads", "1", "--out", str(tmp_path / "run")]
    assert T.main(args) == 0
    capsys.readouterr()
    assert T.main(["--out", str(tmp_path / "run"), "--resume", "--steps", "5", "--minutes", "0.01"]) == 0
    assert "note: --resume continues the run as it was saved; --steps left as saved" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    for bad, said in ((["--init-from", "no-such-model"], "--init-from no-such-model: no such file or installed"),
                      (["--init-from", str(tmp_path / "bad.pt")], "not a checkpoint or weights file"),
                      (["--val", str(tmp_path / "typo")], f"{tmp_path / 'typo'}: no such file or folder")):
        assert T.main(args[:-1] + [str(tmp_path / "other"), *bad]) == 2
        assert said in capsys.readouterr().err
    assert T.main(args[:-1] + [str(tmp_path / "from-name"), "--init-from", "rescodec-x2-avif-v9",
                               "--prior-width", "32", "--prior-blocks", "4"]) == 0
    assert "initialised" in capsys.readouterr().out


def test_main_refuses_what_would_crash_later(data_dir, tmp_path, capsys):
    """Each was a traceback or an internal error: an --out that is a file,
    --scale 1 (no flow), --val-every 0, a damaged checkpoint to resume, and
    an image in --data that does not read."""
    (tmp_path / "afile").write_text("x")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"")
    notimg = tmp_path / "notimg"
    notimg.mkdir()
    (notimg / "b.png").write_text("not a png")
    cut = tmp_path / "cut"   # a truncated PNG: Pillow's message alone did not name it
    cut.mkdir()
    Image.fromarray(skimage.data.astronaut()[:64, :64]).save(cut / "whole.png")
    (cut / "c.png").write_bytes((cut / "whole.png").read_bytes()[:200])
    (tmp_path / "noval").mkdir()
    base = ["--patch", "16", "--batch", "2", "--steps", "2", "--threads", "1"]
    for args, code, said in ((["--data", str(data_dir), "--out", str(tmp_path / "afile")], 2, "is a file"),
                             (["--data", str(data_dir), "--out", str(tmp_path / "x1"), "--scale", "1"], 2,
                              "training.head --scale 1"),
                             (["--data", str(data_dir), "--out", str(tmp_path / "v"), "--val-every", "0"], 2,
                              "--val-every must be at least 1"),
                             (["--out", str(bad), "--resume"], 1, "not a training checkpoint (EOFError)"),
                             (["--data", str(notimg), "--out", str(tmp_path / "n")], 1, "cannot identify image"),
                             (["--data", str(cut), "--out", str(tmp_path / "n")], 1,
                              f"error: {cut / 'c.png'}: image file is truncated"),
                             (["--data", str(data_dir), "--val", str(tmp_path / "noval"), "--out", str(tmp_path / "n")],
                              2, f"error: --val {tmp_path / 'noval'}: no images")):
        assert T.main(args + base) == code
        assert said in capsys.readouterr().err
    assert not (tmp_path / "n").exists()   # the failed run's folder, which it made, is not left empty


def test_a_signal_saves_the_run_and_exits_as_a_shell_counts_it(data_dir, tmp_path, monkeypatch, capsys):
    """Stopped by SIGINT, the run is saved and main returns 130, so that
    `train && export` does not go on; it returned 0."""
    import signal
    monkeypatch.setattr(T, "catch_stop_signals", lambda: ([signal.SIGINT], {}))
    out = tmp_path / "run"
    assert T.main(["--data", str(data_dir), "--out", str(out), "--patch", "16", "--batch", "2", "--steps", "5",
                   "--threads", "1"]) == 130
    assert (out / "checkpoint.pt").is_file() and "stopped by SIGINT" in capsys.readouterr().out


def test_resume_says_which_flow_options_it_leaves_as_saved(data_dir, tmp_path, capsys):
    """Training options got the note; a changed --width was ignored in silence."""
    out = tmp_path / "run"
    base = ["--patch", "16", "--batch", "2", "--steps", "2", "--threads", "1", "--width", "8"]
    assert T.main(["--data", str(data_dir), "--out", str(out)] + base) == 0
    capsys.readouterr()
    assert T.main(["--out", str(out), "--resume", "--width", "16", "--threads", "1"]) == 0
    assert "--width left as saved" in capsys.readouterr().err
    assert T.FlowConfig(**torch.load(out / "checkpoint.pt", weights_only=False)["flow_config"]).width == 8


def test_resume_from_another_folder_finds_relative_data(data_dir, tmp_path, monkeypatch, capsys):
    """--data as given (relative) is kept in the checkpoint; a --resume run from
    another folder found no images there.  A folder the run cannot find
    either way is an error that names it."""
    monkeypatch.chdir(data_dir.parent)
    out = tmp_path / "run"
    assert T.main(["--data", data_dir.name, "--out", str(out), "--patch", "16", "--batch", "2",
                   "--steps", "1", "--threads", "1"]) == 0
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / data_dir.name).exists()
    assert T.main(["--out", str(out), "--resume", "--steps", "2", "--threads", "1"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["train_config"]["data"] == [str(data_dir)]
    state["cwd"] = str(tmp_path / "gone")
    state["train_config"]["data"] = ["nowhere"]
    torch.save(state, out / "checkpoint.pt")
    assert T.main(["--out", str(out), "--resume", "--steps", "3", "--threads", "1"]) == 2
    assert "error: nowhere (the run's data): no such file or folder" in capsys.readouterr().err


def test_a_checkpoint_that_cannot_be_written_is_an_oserror_naming_it_and_leaves_no_tmp(tmp_path, monkeypatch):
    """torch.save on a full disk raised a RuntimeError ("unexpected pos"), an
    internal error, and left checkpoint.tmp (export left NAME.pt.tmp in the
    weights folder)."""
    import errno
    import os
    from rescodec import atomic_write

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left on device") as e:
        T.save_checkpoint(tmp_path / "checkpoint.pt", {"x": torch.zeros(3)})
    assert e.value.filename == str(tmp_path / "checkpoint.pt") and not list(tmp_path.iterdir())
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):   # a file where the folder should be
        atomic_write.write_atomic(tmp_path / "file" / "history.json", b"[]", force=True)


def test_anchor_is_checked_before_the_run(data_dir, tmp_path, capsys):
    """A text file or another scale's weights as --anchor failed after the
    images loaded, as an internal error, leaving an empty --out."""
    from rescodec import weights
    (tmp_path / "t.txt").write_text("hi")
    x4 = str(weights.weights_dir() / weights.entry("rescodec-x4-v7")["file"])
    base = ["--scale", "2", "--width", "8", "--data", str(data_dir), "--patch", "16", "--batch", "2",
            "--steps", "1", "--threads", "1", "--lambda-anchor", "1"]
    for anchor, said in ((str(tmp_path / "t.txt"), "not a checkpoint or weights file"),
                         (x4, "an x4 model; this run is x2")):
        assert T.main(base + ["--anchor", anchor, "--out", str(tmp_path / "r")]) == 2
        assert f"error: --anchor {anchor}: {said}" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()


def test_resume_names_an_option_given_at_its_default(data_dir, tmp_path, capsys):
    """--scale 4 (FlowConfig's default) on an x2 run, and --patch 96, were left
    as saved in silence."""
    out = tmp_path / "run"
    assert T.main(["--scale", "2", "--width", "8", "--data", str(data_dir), "--patch", "16", "--batch", "2",
                   "--steps", "1", "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert T.main(["--out", str(out), "--resume", "--scale", "4", "--patch", "96", "--threads", "1"]) == 0
    assert "--patch, --scale left as saved" in capsys.readouterr().err


def test_no_usable_images_is_one_error_line_and_no_folder_left(tmp_path, capsys):
    (tmp_path / "tiny").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny" / "a.png")
    assert T.main(["--data", str(tmp_path / "tiny"), "--patch", "16", "--out", str(tmp_path / "r"),
                   "--threads", "1"]) == 1
    assert capsys.readouterr().err == f"error: no training images of at least 16x16 in {tmp_path / 'tiny'}\n"
    assert not (tmp_path / "r").exists()


def test_resume_of_a_head_run_says_what_it_is(tmp_path, capsys):
    """A restoration head's run (training.head) has no --resume: the flow
    trainer called its checkpoint "not a training checkpoint (TypeError)"."""
    (tmp_path / "run").mkdir()
    torch.save({"flow_config": {"scale": 2}, "train_config": {"base_model": "rescodec-x2-avif-v9"}, "model": {}},
               tmp_path / "run" / "checkpoint.pt")
    assert T.main(["--resume", "--out", str(tmp_path / "run")]) == 2
    assert "a restoration head's run (python -m rescodec.training.head)" in capsys.readouterr().err


def test_a_closed_terminal_stops_training_as_sigterm_does_unless_ignored():
    """SIGHUP killed a run without its checkpoint; under nohup it stays ignored."""
    import os
    import signal
    old = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        stop, handlers = T.catch_stop_signals()
        os.kill(os.getpid(), signal.SIGHUP)
        T.restore_signals(handlers)
        assert stop == [signal.SIGHUP]
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        stop, handlers = T.catch_stop_signals()
        assert signal.SIGHUP not in handlers and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        T.restore_signals(handlers)
    finally:
        signal.signal(signal.SIGHUP, old)

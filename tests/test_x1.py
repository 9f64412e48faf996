"""Scale 1 (x1): the photo itself through AVIF, restored by the model's head,
no flow.  The container writes it as version 8 and nothing else as 8; the
decoder's output is the head over the AVIF decode, whatever the image's
sides; and the settings refuse what x1 cannot do."""
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch

import rescodec
from rescodec import codec, container, lossy_lr, mask, tiling
from rescodec.errors import CorruptError, ImageInputError
from rescodec.settings import EncodeSettings

from conftest import gradient_image, photo_folder, with_header, x1_net, x1_settings

X1 = x1_settings()


@pytest.fixture(scope="module")
def odd():
    return gradient_image(37, 51, seed=3)


@pytest.fixture(scope="module")
def x1_file(odd):
    return codec.encode_ex(odd, X1, net=x1_net()).data


def test_an_x1_file_is_version_8_and_holds_the_photo_through_avif(odd, x1_file):
    f = codec.unpack(x1_file)
    assert x1_file[4] == container.VERSION_X1 and f.header.scale == 1 and f.header.lr_size == (37, 51)
    assert f.sections[container.SECTION_MASK][0] == container.MASK_EMPTY
    # the picture is the photo's own AVIF at the asked quality
    assert np.array_equal(codec.thumbnail(x1_file),
                          lossy_lr.decode(lossy_lr.encode(odd, 40), odd.shape))


def test_x1_decodes_to_the_head_over_the_avif_decode_at_odd_sides(odd, x1_file):
    net = x1_net()
    out, _, hd = codec.decode_array(x1_file, net=net)
    assert out.shape == odd.shape
    pic = codec.thumbnail(x1_file)
    padded = np.pad(pic, ((0, 1), (0, 1), (0, 0)), mode="symmetric")   # even sides for 2x2 blocks
    with torch.inference_mode():
        whole = tiling.to_uint8(net.restore(tiling.to_tensor(padded)))[:37, :51]
    assert np.array_equal(out, whole)
    assert np.abs(out.astype(int) - pic.astype(int)).mean() > 1   # the head does work
    assert np.array_equal(codec.decode_array(x1_file, net=net)[0], out)   # deterministic


def test_x1_head_tiles_give_the_whole_image(monkeypatch):
    """Tiles of 2x2 blocks: the windows keep the blocks' phase, so only float
    rounding differs (one level in a pixel or two); the thread count none."""
    net = x1_net(1)
    rgb = gradient_image(2 * 45, 2 * 70)
    whole = tiling.restore_rgb(net, rgb)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert np.array_equal(tiling.restore_rgb(net, rgb), whole)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(tiling, "HEAD_CORE_LR", 16)     # 3 x 5 tiles of 32 pixels
    diff = np.abs(tiling.restore_rgb(net, rgb).astype(int) - whole)
    assert diff.max() <= 1 and (diff > 0).sum() <= 3
    # a window out of phase (an odd start) would be another head: far off
    shifted = tiling.restore_rgb(net, rgb[1:-1, 1:-1])
    assert np.abs(shifted.astype(int) - whole[1:-1, 1:-1]).mean() > 1


def test_version_7_holds_no_x1_file_and_version_8_nothing_else(x1_file, photo):
    with pytest.raises(CorruptError):   # an x1 file called version 7: flags bit 1 with an AV1 LR
        codec.unpack(with_header(x1_file, version=7))
    with pytest.raises(CorruptError):   # version 8 without the x1 flag
        codec.unpack(with_header(x1_file, flags=x1_file[5] & ~container.FLAG_X1))
    x2 = codec.encode(photo, scale=2, lr_quality=10)
    assert x2[4] == container.VERSION
    with pytest.raises(CorruptError):   # an x2 file called version 8
        codec.unpack(with_header(x2, version=8))
    bad = bytearray(x1_file)            # fields bits 2-3 must be zero in version 8
    bad[6] |= 0x04
    bad[-4:] = struct.pack("<I", zlib.crc32(bytes(bad[:-4])))
    with pytest.raises(CorruptError):
        codec.unpack(bytes(bad))


def test_x1_is_never_lossless_nor_legacy(x1_file):
    f = codec.unpack(x1_file)
    with pytest.raises(ValueError, match="versions 4-6"):
        container.pack(f.header, *(f.sections.get(k) for k in (1, 2, 3, 4)), legacy=True)
    with pytest.raises(ValueError, match="AVIF"):
        replace(X1, lr_codec="lossless", lr_quality=None).validate()


def test_a_threshold_no_gradient_reaches_marks_nothing():
    """lr_mask skips the filters above MAX_STRENGTH: the filters agree."""
    rng = np.random.default_rng(0)
    worst = np.where(rng.random((64, 64, 1)) < 0.5, 255, 0).astype(np.uint8).repeat(3, 2)
    for norm in (1, 2):
        p = mask.MaskParams(threshold=1.0, sigma=0.0, norm=norm)
        assert 0 < mask.boundary_strength(worst, p).max() <= mask.MAX_STRENGTH
        high = replace(p, threshold=mask.MAX_STRENGTH + 1e-3)
        assert not mask.boundary_strength(worst, high).any()
        assert not mask.lr_mask(worst, 1, high).any()


def test_x1_head_training_exports_a_model_that_encodes_and_decodes(tmp_path, own_weights):
    """training.head --scale 1: crops through full-size AVIF, a checkpoint
    that exports as an x1 model with no mask and no Z, and files that name it."""
    from rescodec import weights
    from rescodec.training import head as head_training
    from rescodec.training.train import export_run
    data = photo_folder(tmp_path / "photos")
    assert head_training.main(["--scale", "1", "--data", str(data), "--out", str(tmp_path / "run"),
                               "--minutes", "0.05", "--crop", "64", "--patch", "32", "--batch", "2",
                               "--width", "8", "--blocks", "1", "--val-fraction", "0.3"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["flow_config"]["scale"] == 1 and state["train_config"]["mask_threshold"] == 65535
    assert state["train_config"]["dihedral"] is False     # left-right mirroring only, unless asked
    export_run(tmp_path / "run", "tiny-x1", None, default=False)
    d = weights.card("tiny-x1").defaults
    assert (d.lr_codec, d.threshold, d.temperature) == ("avif", 65535.0, 0.0)
    photo = gradient_image(50, 61, seed=9)
    rsc = codec.encode(photo, model="tiny-x1", lr_quality=30)
    out, _, hd = codec.decode_array(rsc)
    assert (hd.scale, hd.model, out.shape) == (1, "tiny-x1", photo.shape)
    assert len(rsc) - len(codec.unpack(rsc).sections[container.SECTION_LR]) < 32   # header, mask, CRC


def test_x1_head_training_cuts_a_deeper_head_to_its_first_blocks(tmp_path, own_weights):
    """--init-from a head of 2 blocks with --blocks 1: the new head starts as
    the first block of the old one (at lr 0 it stays so)."""
    from rescodec.training import head as head_training
    data = photo_folder(tmp_path / "photos")
    common = ["--scale", "1", "--data", str(data), "--minutes", "0.02", "--crop", "64", "--patch", "32",
              "--batch", "2", "--width", "8", "--val-fraction", "0.3"]
    assert head_training.main(common + ["--blocks", "2", "--out", str(tmp_path / "deep")]) == 0
    logged = []
    cfg = head_training.HeadConfig(scale=1, data=[str(data)], crop=64, patch=32, batch=2, width=8, blocks=1,
                                   minutes=0.02, val_fraction=0.3, lr=0.0, lr_min=0.0,
                                   init_from=str(tmp_path / "deep" / "checkpoint.pt"))
    (tmp_path / "cut").mkdir()
    head_training.train(cfg, tmp_path / "cut", log=logged.append)
    deep = torch.load(tmp_path / "deep" / "checkpoint.pt", weights_only=False)["model"]
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert "cut to its first 1 blocks" in logged[0]
    assert sorted(cut) == sorted(k for k in deep if not k.startswith("head.body.1."))
    assert all(torch.equal(cut[k], deep[k]) for k in cut)


def test_head_trainer_wants_a_base_model_or_scale_1(capsys):
    from rescodec.training import head as head_training
    for args in ([], ["--scale", "1", "--base-model", "rescodec-x2-avif-v9"], ["--scale", "2"]):
        assert head_training.main(args + ["--data", ".", "--out", "/nonexistent"]) == 2
        assert "--scale 1" in capsys.readouterr().err


def test_an_x1_model_with_no_head_decodes_to_the_avif_decode(tmp_path, own_weights, odd):
    from rescodec.training import head as head_training
    from rescodec.training.train import export_run
    assert head_training.main(["--scale", "1", "--width", "0", "--out", str(tmp_path / "run")]) == 0
    e = export_run(tmp_path / "run", "plain-x1", None, default=False)
    assert e["cpu_hours"] == 0 and e["config"]["head_width"] == 0
    rsc = codec.encode(odd, model="plain-x1", lr_quality=70)
    assert np.array_equal(codec.decode_array(rsc)[0], codec.thumbnail(rsc))


# measured on this crop: rescodec-x1-avif-v4 +0.41 / +0.35 dB at AVIF quality
# 10 / 30; rescodec-x1-avif-v5 +0.34 / +0.33 at 40 / 50 (v4 there: +0.14 /
# -0.08, so those floors fail it); rescodec-x1-avif-v7 +0.37 / +0.38 at 60 /
# 70 (v5: +0.34 / +0.22); rescodec-x1-avif-v8 +0.37 / +0.49 at 80 / 90, the
# latter with its gain map (the plain decode is v1: no head, no map)
GAIN_FLOOR = {10: 0.30, 30: 0.25, 40: 0.25, 50: 0.22, 60: 0.35, 70: 0.33, 80: 0.33, 90: 0.44}
HEAD = {10: "rescodec-x1-avif-v4", 30: "rescodec-x1-avif-v4", 40: "rescodec-x1-avif-v5",
        50: "rescodec-x1-avif-v5", 60: "rescodec-x1-avif-v7", 70: "rescodec-x1-avif-v7",
        80: "rescodec-x1-avif-v8", 90: "rescodec-x1-avif-v8"}


@pytest.mark.parametrize("lr_quality", sorted(HEAD))
def test_the_shipped_x1_head_beats_the_plain_avif_decode(astronaut, lr_quality):
    """The x1 head the ladder names at the same bytes as the plain decode
    (v1): a floor under the gain measured on this CC0 photo (BENCHMARKS.md,
    "Full size (x1)")."""
    from rescodec import weights
    from rescodec.evaluation.metrics import psnr
    img = astronaut[:256, :320]
    head = codec.encode(img, scale=1, lr_quality=lr_quality)
    assert codec.unpack(head).header.model == weights.default_model(1, "avif", lr_quality) == HEAD[lr_quality]
    plain = codec.encode(img, model="rescodec-x1-avif-v1", lr_quality=lr_quality)
    lr = container.SECTION_LR
    assert codec.unpack(head).sections[lr] == codec.unpack(plain).sections[lr]
    gain = psnr(img, codec.decode_array(head)[0]) - psnr(img, codec.decode_array(plain)[0])
    assert gain > GAIN_FLOOR[lr_quality], gain


def test_a_temperature_on_x1_is_said_to_do_nothing(tmp_path):
    """No latent at x1: encoding with a temperature or a seed stores neither and says so,
    and decoding with one says it changes nothing."""
    import subprocess
    import sys
    from PIL import Image
    src = tmp_path / "a.png"
    Image.fromarray(gradient_image(40, 56)).save(src)
    enc = codec.encode_ex(src, EncodeSettings(scale=1, lr_quality=30, temperature=1.0))
    assert enc.header.z_temperature == 0 and any("no latent" in n for n in enc.notices)
    seeded = codec.encode_ex(src, EncodeSettings(scale=1, lr_quality=30, seed=5))
    assert any("--seed" in n for n in seeded.notices) and seeded.data == enc.data
    assert not codec.encode_ex(src, EncodeSettings(scale=1, lr_quality=30)).notices
    (tmp_path / "a.rsc").write_bytes(enc.data)
    p = subprocess.run([sys.executable, "-m", "rescodec", "decode", str(tmp_path / "a.rsc"),
                        "--temperature", "1", "-o", str(tmp_path / "b.png")], capture_output=True, text=True)
    assert p.returncode == 0 and "no latent" in p.stderr


def test_x1_above_avif_quality_60_codes_at_speed_4():
    """With no --speed, x1 above AVIF quality 60 (`-q 86-100`) codes at speed
    4: about half the time of speed 3 for about 1 % more bytes (BENCHMARKS.md,
    "Full size (x1)"); everything else at speed 3."""
    img = gradient_image(64, 96, seed=5)
    for q, default, other in ((60, 3, 4), (61, 4, 3), (90, 4, 3)):
        data = codec.encode(img, scale=1, lr_quality=q)
        assert data == codec.encode(img, scale=1, lr_quality=q, lr_speed=default), q
        assert data != codec.encode(img, scale=1, lr_quality=q, lr_speed=other), q
    assert codec.encode(img, quality=86) == codec.encode(img, quality=86, lr_speed=4)
    assert codec.encode(img, quality=85) == codec.encode(img, quality=85, lr_speed=3)


def test_head_training_with_all_eight_orientations(tmp_path, own_weights):
    """--dihedral is a flag that reaches the run's stored config, and a run
    with patches in all 8 orientations trains and saves."""
    from rescodec.training import head as head_training
    data = photo_folder(tmp_path / "photos")
    assert head_training.main(["--scale", "1", "--data", str(data), "--out", str(tmp_path / "run"),
                               "--minutes", "0.02", "--crop", "64", "--patch", "32", "--batch", "2",
                               "--width", "8", "--blocks", "1", "--val-fraction", "0.3", "--dihedral"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["train_config"]["dihedral"] is True and state["step"] > 0


def test_a_side_over_what_avif_decodes_is_never_written_at_full_size(monkeypatch):
    """libavif decodes at most 32768 pixels a side (and 2^28 in all): an x1
    file of a wider photo was written and could not be read back, and the
    look for graphics at -q 0-40 failed on it.  Where -q chose x1 the photo
    goes to -s 2's file for that -q, so bytes still grow with -q, with a
    note; -s 1 is refused; targets leave x1 out."""
    wide = np.random.default_rng(0).integers(0, 255, (2, lossy_lr.MAX_SIDE + 1, 3), dtype=np.uint8)
    at40, at41 = (codec.encode_ex(wide, EncodeSettings(quality=q)) for q in (40, 41))
    assert at41.header.scale == 2 and at41.notices[0] == (
        f"{lossy_lr.MAX_SIDE + 1}x2 is more than AVIF decodes at full size: x2 (LR quality 41) instead")
    assert at40.notices == [] and len(at41.data) > len(at40.data)
    assert rescodec.decode(at41.data).size == (lossy_lr.MAX_SIDE + 1, 2)
    assert codec.encode_ex(wide.transpose(1, 0, 2), EncodeSettings(size=20000)).header.scale == 2
    with pytest.raises(ImageInputError, match=r"AVIF decodes at most 32768 pixels a side .* \(-s 2\)"):
        codec.encode_ex(wide, EncodeSettings(scale=1))
    edge = wide[:, :lossy_lr.MAX_SIDE]   # the largest side AVIF decodes stays at full size
    enc = codec.encode_ex(edge, EncodeSettings(quality=75))
    assert enc.header.scale == 1 and rescodec.decode(enc.data).size == (lossy_lr.MAX_SIDE, 2)
    monkeypatch.setattr(lossy_lr, "MAX_PIXELS", 32 * 32 - 1)   # the area limit, as small
    assert codec.encode_ex(wide[:, :32].repeat(16, 0), EncodeSettings(quality=75)).header.scale == 2


def test_head_trainer_refuses_bad_data_and_out_and_counts_a_stop(tmp_path, own_weights, monkeypatch, capsys):
    """A stopped head run exited 0, so `head ... && rescodec export` exported
    it; a mistyped --data was skipped (or said without "error:"), a --out
    under a file was a traceback; --init-from by name was stored as the name,
    so export missed the CPU-hours of the model it started from."""
    import signal
    from rescodec.training import head as head_training
    data = photo_folder(tmp_path / "photos")
    (tmp_path / "afile").write_text("x")
    cut = tmp_path / "cut"   # an image that does not read: named, exit 1 as the flow's trainer
    cut.mkdir()
    (cut / "c.png").write_bytes(sorted(data.iterdir())[0].read_bytes()[:100])
    common = ["--scale", "1", "--minutes", "0.02", "--crop", "64", "--patch", "32", "--batch", "2",
              "--width", "8", "--blocks", "1", "--val-fraction", "0.3"]
    for args, code, said in ((["--data", str(data), str(tmp_path / "typo")], 2, f"error: {tmp_path / 'typo'}: no such"),
                             (["--data", str(data), "--out", str(tmp_path / "afile" / "sub")], 1, "error: "),
                             (["--data", str(data), "--init-from", "no-such-model"], 2, "error: --init-from"),
                             (["--data", str(cut)], 1, f"error: {cut / 'c.png'}: ")):
        out = [] if "--out" in args else ["--out", str(tmp_path / "r")]
        assert head_training.main(common + args + out) == code, args
        err = capsys.readouterr().err
        assert err.startswith(said) and "Traceback" not in err, err
        assert not (tmp_path / "r").exists()
    assert head_training.main(common + ["--data", str(data), "--out", str(tmp_path / "first")]) == 0
    stop, real = [], head_training.prepare   # a stop once the crops are ready: saved, exit 130
    monkeypatch.setattr(head_training, "catch_stop_signals", lambda: (stop, {}))
    monkeypatch.setattr(head_training, "prepare", lambda *a: (real(*a), stop.append(signal.SIGINT))[0])
    assert head_training.main(common + ["--data", str(data), "--out", str(tmp_path / "stopped"),
                                        "--init-from", str(tmp_path / "first" / "checkpoint.pt")]) == 130
    assert "stopped by SIGINT" in capsys.readouterr().out and (tmp_path / "stopped" / "checkpoint.pt").exists()
    monkeypatch.setattr(head_training, "prepare", real)   # `stop` still holds it: a stop while they go
    # through the codec is one line, and leaves no empty run folder
    assert head_training.main(common + ["--data", str(data), "--out", str(tmp_path / "early")]) == 130
    assert capsys.readouterr().err.startswith("error: stopped by SIGINT while the crops went through the codec")
    assert not (tmp_path / "early").exists()
    monkeypatch.undo()
    from rescodec import weights
    name = "rescodec-x1-avif-v8"
    assert head_training.main(common + ["--data", str(data), "--out", str(tmp_path / "named"), "--width", "48",
                                        "--blocks", "6", "--init-from", name]) == 0
    saved = torch.load(tmp_path / "named" / "checkpoint.pt", weights_only=False)["train_config"]["init_from"]
    assert saved == str(weights.weights_dir() / weights.entry(name)["file"])

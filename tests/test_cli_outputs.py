"""The CLI's outputs: formats by extension, stdin/stdout, -o as file or folder,
folder mirroring, file modes, --quiet/--verbose, `thumb`, `models`, light imports.

Most tests run the command in-process (click's CliRunner) to spare a torch
import per call; stdin/stdout piping and the import checks use real processes."""
import errno
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import gradient_image
import rescodec
from rescodec import atomic_write, batch_run, cli, codec, container, image_output
from rescodec.settings import EncodeSettings

REPO = Path(__file__).resolve().parent.parent


def rsc(*args, input=None, env=None):
    res = CliRunner().invoke(cli.main, [str(a) for a in args], input=input, env=env)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def proc(*args, stdin=None, **kw):
    p = subprocess.run([sys.executable, "-m", "rescodec.cli", *map(str, args)], stdin=stdin,
                       capture_output=True, timeout=300, cwd=REPO, **kw)
    assert b"Traceback" not in p.stderr, p.stderr.decode()
    return p


def errors(res) -> list:
    return [l for l in res.stderr.splitlines() if l.startswith("rescodec: error:")]


@pytest.fixture
def files(tmp_path):
    """An RGB and an RGBA picture, and their .rsc files."""
    Image.fromarray(gradient_image(40, 56)).save(tmp_path / "rgb.png")
    a = gradient_image(33, 17, seed=1)
    Image.fromarray(np.dstack([a, np.full(a.shape[:2], 180, np.uint8)]), "RGBA") \
        .save(tmp_path / "rgba.png")
    for n in ("rgb", "rgba"):
        (tmp_path / f"{n}.rsc").write_bytes(codec.encode(tmp_path / f"{n}.png", scale=4))
    return tmp_path


# 1. the format follows the extension

@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"),
                                     (".webp", "WEBP"), (".tif", "TIFF"), (".tiff", "TIFF"),
                                     (".bmp", "BMP")])
def test_decode_format_from_extension(files, ext, fmt):
    out = files / f"back{ext}"
    res = rsc("decode", files / "rgb.rsc", "-o", out)
    assert res.exit_code == 0, res.stderr
    want = np.asarray(codec.decode((files / "rgb.rsc").read_bytes()))
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (56, 40)
        got = np.asarray(im.convert("RGB"))
    if fmt == "JPEG":      # quality 95: close, not exact
        assert np.abs(got.astype(int) - want).mean() < 3
    else:                  # PNG, lossless WebP, TIFF, BMP: exact
        assert np.array_equal(got, want)


@pytest.mark.parametrize("ext,mode", [(".jpg", "RGB"), (".bmp", "RGB"), (".png", "RGBA"),
                                      (".webp", "RGBA"), (".tiff", "RGBA")])
def test_alpha_dropped_only_where_the_format_cannot_hold_it(files, ext, mode):
    res = rsc("decode", files / "rgba.rsc", "-o", files / f"back{ext}")
    assert res.exit_code == 0, res.stderr
    with Image.open(files / f"back{ext}") as im:
        assert im.mode == mode
    assert ("alpha" in res.stderr) == (mode == "RGB")     # a note when it is dropped


def test_la_to_bmp_becomes_l(tmp_path):
    la = Image.fromarray(gradient_image(24, 24)).convert("L")
    la.putalpha(128)
    notes = []
    data = image_output.image_bytes(la, tmp_path / "x.bmp", notes)
    assert Image.open(io.BytesIO(data)).mode == "L" and notes


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tiff"])
def test_icc_and_exif_are_kept(tmp_path, ext):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010E] = "a test picture"             # ImageDescription
    img = Image.fromarray(gradient_image(16, 16))
    img.info.update(icc_profile=icc, exif=exif.tobytes())
    back = Image.open(io.BytesIO(image_output.image_bytes(img, tmp_path / f"x{ext}", [])))
    assert back.info.get("icc_profile") == icc
    assert back.getexif().get(0x010E) == "a test picture"


@pytest.mark.parametrize("name, says", [("back.gif", "cannot write .gif files"),
                                         ("back", "a name without an extension"),
                                         (".png", "the name is only an extension")])
def test_unknown_extension_refused(files, name, says):
    before = sorted(os.listdir(files))
    res = rsc("decode", files / "rgb.rsc", "-o", files / name)
    assert res.exit_code != 0 and len(res.stderr.strip().splitlines()) == 1 and errors(res)
    assert says in res.stderr
    assert sorted(os.listdir(files)) == before


def test_folder_outputs_stay_png(files, tmp_path):
    res = rsc("decode", files / "rgb.rsc", files / "rgba.rsc", "-o", tmp_path / "dec")
    assert res.exit_code == 0, res.stderr
    for n in ("rgb", "rgba"):
        assert Image.open(tmp_path / "dec" / f"{n}.decoded.png").format == "PNG"


# 2. stdin and stdout

def test_pipe_encode_then_decode(files):
    with open(files / "rgb.png", "rb") as f:
        p = proc("encode", "-", "-s", "4", "-o", "-", stdin=f)
    assert p.returncode == 0, p.stderr
    assert codec.info(p.stdout)["width"] == 56             # stdout holds only the file
    assert b"bpp" in p.stderr                             # the line went to stderr
    q = proc("decode", "-", "-o", "-", input=p.stdout)
    assert q.returncode == 0, q.stderr
    img = Image.open(io.BytesIO(q.stdout))
    assert img.format == "PNG"
    assert np.array_equal(np.asarray(img), np.asarray(codec.decode(p.stdout)))


def test_stdin_and_stdout_in_process(files):
    res = rsc("encode", "-", "-s", "4", "-o", files / "piped.rsc",
              input=(files / "rgb.png").read_bytes())
    assert res.exit_code == 0, res.stderr
    assert codec.info((files / "piped.rsc").read_bytes())["height"] == 40
    res = rsc("decode", files / "rgb.rsc", "-o", "-")
    assert res.exit_code == 0 and res.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert "->" in res.stderr
    res = rsc("thumb", "-", "-o", "-", input=(files / "rgb.rsc").read_bytes())
    assert Image.open(io.BytesIO(res.stdout_bytes)).size == (14, 10)


@pytest.mark.parametrize("args", [["encode", "-", "rgb.png", "-o", "x.rsc"],
                                  ["encode", "rgb.png", "rgba.png", "-o", "-"],
                                  ["encode", "-"],
                                  ["decode", "-", "-o", "dec/"]])
def test_stdio_misuse_refused(files, args):
    before = sorted(os.listdir(files))
    res = rsc(*[f"{files}/{a}" if a.endswith((".png", ".rsc", "/")) else a for a in args],
              input=b"")
    assert res.exit_code == 2 and len(errors(res)) == 1 and res.stdout_bytes == b""
    assert sorted(os.listdir(files)) == before


def test_empty_stdin_is_one_error(files):
    res = rsc("encode", "-", "-o", files / "x.rsc", input=b"")
    assert res.exit_code == 1 and len(errors(res)) == 1 and "<stdin>" in res.stderr
    assert not (files / "x.rsc").exists()
    res = rsc("decode", "-", "-o", files / "x.png", input=b"not an rsc file")
    assert res.exit_code == 1 and len(errors(res)) == 1 and not (files / "x.png").exists()


def test_psnr_target_on_the_command_line(files):
    res = rsc("encode", files / "rgb.png", "--psnr", "30", "-o", files / "p.rsc", "--json")
    assert res.exit_code == 0 and re.search(r"note: .*rgb.png: -q \d+ reaches [\d.]+ dB, the target of 30 dB",
                                            res.stderr), res.stderr
    notes = json.loads(res.stdout)[0]["notes"]   # --json has the notes too, for scripts
    assert len(notes) == 1 and re.match(r"-q \d+ reaches [\d.]+ dB, the target of 30 dB", notes[0])
    res = rsc("encode", files / "rgb.png", "--psnr", "30", "--bpp", "0.5", "-o", files / "q.rsc")
    assert res.exit_code == 2 and errors(res) == ["rescodec: error: give one of quality, bpp, size and psnr"]
    assert not (files / "q.rsc").exists()


def test_stdin_past_what_an_image_takes_is_one_error(files, monkeypatch):
    """cat /dev/zero | rescodec encode -: read until memory ran out."""
    from rescodec import images
    monkeypatch.setattr(images, "MAX_INPUT_OVERHEAD", 1 << 16)
    most = 1000 * images.MAX_INPUT_BYTES_PER_PIXEL + (1 << 16)
    for args in (["encode", "-", "-o", files / "x.rsc"], ["compare", "-"]):
        res = rsc(*args, "--max-pixels", "1000", input=bytes(most + 1))
        assert res.exit_code == 1 and errors(res) == [
            f"rescodec: error: <stdin>: over {most} bytes, more than an image of at most 1000 pixels takes"]
    assert not (files / "x.rsc").exists()


# 3. -o: a file for one input, a folder for several

def test_o_is_a_file_for_one_input(files):
    res = rsc("encode", files / "rgb.png", "-s", "4", "-o", files / "name.rsc")
    assert res.exit_code == 0 and (files / "name.rsc").is_file()


def test_o_as_folder_must_not_be_a_file(files):
    (files / "taken").write_bytes(b"keep me")
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-s", "4", "-o", files / "taken")
    assert res.exit_code == 2 and len(errors(res)) == 1
    assert (files / "taken").read_bytes() == b"keep me"


def test_summary_names_the_folder(files, tmp_path):
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-s", "4", "--json",
              "-o", tmp_path / "enc")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)   # the JSON alone; the summary on stderr
    assert {Path(r["output"]).parent for r in rows} == {tmp_path / "enc"}
    assert str(tmp_path / "enc") in res.stderr.splitlines()[-1]


# 4. a folder's contents are mirrored, without piling up levels

def test_folder_round_trip_keeps_one_level(tmp_path):
    photos = tmp_path / "photos"
    (photos / "day2").mkdir(parents=True)
    Image.fromarray(gradient_image(32, 48)).save(photos / "a.png")
    Image.fromarray(gradient_image(24, 16, seed=2)).save(photos / "day2" / "b.png")
    assert rsc("encode", photos, "-s", "8", "-o", tmp_path / "enc").exit_code == 0
    assert rsc("decode", tmp_path / "enc", "-o", tmp_path / "dec").exit_code == 0
    found = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*")
                   if f.is_file() and f.parent != photos and photos not in f.parents)
    assert found == sorted(["enc/a.rsc", "enc/day2/b.rsc",
                            "dec/a.decoded.png", "dec/day2/b.decoded.png"])


def test_two_inputs_meeting_at_one_output_refused(tmp_path):
    Image.fromarray(gradient_image(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(gradient_image(16, 16)).save(tmp_path / "x.bmp")
    res = rsc("encode", tmp_path / "x.png", tmp_path / "x.bmp", "-s", "4")
    assert res.exit_code == 2 and len(errors(res)) == 1 and not (tmp_path / "x.rsc").exists()


# 5. file modes follow the umask

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_output_mode_follows_umask(files, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write.write_atomic(files / "w.bin", b"x", force=False)
        atomic_write.write_atomic(files / "w.bin", b"y", force=True)       # os.replace path too
        res = rsc("decode", files / "rgb.rsc", "-o", files / "d.png")
        assert res.exit_code == 0, res.stderr
    finally:
        os.umask(old)
    for f in ("w.bin", "d.png"):
        assert stat.S_IMODE((files / f).stat().st_mode) == mode, f


def test_encoded_file_mode_in_a_process(files):
    p = proc("encode", files / "rgb.png", "-s", "4", "-o", files / "m.rsc",
             preexec_fn=lambda: os.umask(0o022))
    assert p.returncode == 0 and stat.S_IMODE((files / "m.rsc").stat().st_mode) == 0o644


# 6. --quiet and --verbose

def test_quiet_prints_errors_only(files, tmp_path):
    (files / "bad.png").write_bytes(b"not a picture")
    res = rsc("encode", files / "rgb.png", files / "bad.png", "-s", "4", "--quiet",
              "-o", tmp_path / "q")
    assert res.exit_code == 1 and res.stdout == ""
    assert len(errors(res)) == 1 and "bad.png" in errors(res)[0]
    assert (tmp_path / "q" / "rgb.rsc").exists()


def test_verbose_prints_section_sizes(files):
    for cmd, args in (("encode", [files / "rgba.png", "-s", "4", "-o", files / "v.rsc"]),
                      ("decode", [files / "v.rsc", "-o", files / "v.png"])):
        res = rsc(cmd, *args, "-v")
        assert res.exit_code == 0, res.stderr
        sections = codec.info((files / "v.rsc").read_bytes())["sections"]
        for name, d in sections.items():          # each part and its size, as the file has it
            assert f"{name} {cli._kb(d['bytes'])}" in res.stdout
    assert rsc("decode", files / "v.rsc", "--quiet", "-v").exit_code == 2


# 7. --refine is a flag

def test_refine_before_file_name_and_iters(files):
    res = rsc("encode", "--refine-iters", "2", files / "rgb.png", "-s", "4", "-o",
              files / "r.rsc")
    assert res.exit_code == 0, res.stderr
    assert "refined" in res.stderr
    res = rsc("encode", "--refine", files / "rgb.png", "-s", "4", "-o", files / "r2.rsc")
    assert res.exit_code == 0 and "refined" in res.stderr


# 8. help speaks to users

def test_encode_help_has_no_paper_references():
    text = rsc("encode", "--help").stdout
    for jargon in ("Table 4", "BDFlow", "Algorithm", "HCD", "Sobel"):
        assert jargon not in text


# 9. models

def test_models_lists_the_manifest(tmp_path):
    (tmp_path / "m-x2.pt").write_bytes(b"\0" * 3000)
    manifest = {"models": {
        "m-x2": {"file": "m-x2.pt", "scale": 2, "default": True, "cpu_hours": 1.0, "sha256": "0" * 64,
                 "cpu_hours_total": 3.5, "train_config": {"lr_codec": "avif"},
                 "validation": {"bpp": 0.5, "psnr_rgb": 33.25}},
        "m-x4": {"file": "m-x4.pt", "scale": 4, "default": False, "cpu_hours": 0.75,
                 "train_config": {}, "temperature": 0.5}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    env = {"RESCODEC_WEIGHTS": str(tmp_path)}
    res = rsc("models", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["m-x2"] == {**rows["m-x2"], "scale": 2, "default": True, "lr_codec": "avif",
                            "bytes": 3000, "cpu_hours": 3.5, "bpp": 0.5, "psnr_rgb": 33.25}
    assert rows["m-x4"] == {**rows["m-x4"], "default": False, "lr_codec": "lossless",
                            "bytes": None, "cpu_hours": 0.75, "bpp": None, "temperature": 0.5}
    assert rows["m-x2"]["temperature"] == 0.0
    assert rows["m-x2"]["used_for"] == ["-q 5-40", "-s 2 -q 0-100", "-s 2 --lr-codec lossless",
                                        "--lr-codec lossless"]   # the only x2 flow, for either picture
    assert rows["m-x4"]["used_for"] == []
    lines = rsc("models", env=env).stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("model ") and lines[3].startswith("val: ")
    assert lines[1].startswith("m-x2") and "  -q 5-40; -s 2 -q 0-100; " in lines[1]
    # its hash in the manifest is not the file's: listed as installed, it failed at encode
    assert rows["m-x2"]["hash_ok"] is False and "3 KB (fails its SHA-256 check)" in lines[1]
    assert "texture, t = 0.5" in lines[2] and "texture" not in lines[1] and lines[2].endswith("--model only")
    empty = tmp_path / "none"
    empty.mkdir()
    res = rsc("models", env={"RESCODEC_WEIGHTS": str(empty)})
    assert res.exit_code == 1 and len(errors(res)) == 1


def test_models_lists_the_installed_ones():
    res = rsc("models", "--json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert rows and all(r["name"] and r["scale"] and r["hash_ok"] for r in rows)
    names = [r["name"] for r in rows]   # v10 after v9
    assert names.index("rescodec-x2-avif-v9") < names.index("rescodec-x2-avif-v10")
    used = {r["name"]: r["used_for"] for r in rows}
    assert used[EncodeSettings().resolved().model][0].startswith("-q ")   # the default -q 75's model


# 10. thumb

def test_thumb_writes_the_stored_picture(files):
    res = rsc("thumb", files / "rgb.rsc")
    assert res.exit_code == 0, res.stderr
    want = codec.thumbnail((files / "rgb.rsc").read_bytes())
    assert np.array_equal(np.asarray(Image.open(files / "rgb.thumb.png")), want)
    before = (files / "rgb.thumb.png").read_bytes()
    (files / "rgb.thumb.png").write_bytes(b"mine")
    res = rsc("thumb", files / "rgb.rsc")
    assert res.exit_code == 1 and "--force" in res.stderr
    assert (files / "rgb.thumb.png").read_bytes() == b"mine"
    assert rsc("thumb", files / "rgb.rsc", "--force").exit_code == 0
    assert (files / "rgb.thumb.png").read_bytes() == before
    assert rsc("thumb", files / "rgb.rsc", "-o", files / "t.webp").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(files / "t.webp")), want)
    assert rsc("thumb", files / "rgb.rsc", "-o", files / "t.gif").exit_code == 2
    assert not (files / "t.gif").exists()


# 11. the CLI module imports no torch

def test_cli_module_imports_no_torch():
    """`rescodec --help` / `--version` answer without loading torch (the codec
    loads on first use), and the lazy names still work."""
    code = ("import sys, rescodec.cli; print('torch' in sys.modules); "
            "import rescodec; rescodec.encode; print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["False", "True"], p.stderr


def test_version_and_help():
    p = proc("--version")
    assert p.returncode == 0 and p.stdout.decode().split()[-2:] == ["version", rescodec.__version__]
    assert rsc("--help").exit_code == 0


# 7. names, devices, signals and options that cannot go together

@pytest.mark.parametrize("args,said", [
    (["--size", "3000", "-s", "8"], "x8 keeps its model's lossless thumbnail"),
    (["--bpp", "0.3", "--lr-codec", "lossless"], "needs the AVIF LR"),
    (["--bpp", "0.3", "--refine"], "refinement with a bpp or size target"),
    (["--size", "3000", "--lr-quality", "50"], "chooses the LR quality itself"),
    (["--size", "3000", "--model", "rescodec-x2-v8"], "rescodec-x2-v8 keeps a lossless one"),
    (["--bpp", "0.5", "--lr-step", "4"], "codes the LR with AVIF, which has no LR step"),
    (["-s", "1", "--lr-space", "ycc"], "x1 stores the photo with AVIF"),
    (["--lr-step", "3", "--model", "rescodec-x2-avif-v12"], "model rescodec-x2-avif-v12 codes the LR with AVIF")])
def test_options_that_cannot_go_together_are_refused_once(files, args, said):
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", files / "out", *args)
    assert res.exit_code == 2 and len(errors(res)) == 1 and said in errors(res)[0]
    assert not (files / "out").exists()


def test_names_the_file_system_takes_are_written_and_longer_ones_said(files):
    long_ok = files / ("n" * 240 + ".png")           # its .rsc is 244 characters; a temp name with
    long_ok.write_bytes((files / "rgb.png").read_bytes())   # the name in it would not fit
    p = proc("encode", long_ok, "-s", "4")
    assert p.returncode == 0, p.stderr.decode()
    assert long_ok.with_suffix(".rsc").exists()
    assert not [f for f in os.listdir(files) if f.endswith(".tmp")]
    too_long = files / ("y" * 300 + ".png")
    for args in (["encode", too_long], ["encode", files / "rgb.png", "-o", files / ("y" * 300 + ".rsc")],
                 ["decode", files / "rgb.rsc", "-o", files / ("y" * 300 + ".png")]):
        p = proc(*args)
        err = p.stderr.decode().strip().splitlines()
        assert p.returncode == 1 and len(err) == 1 and err[0].endswith("file name too long"), err


def test_a_pipe_is_written_through_not_replaced(files):
    """As /dev/null is (not tested on it: a failure would replace it, as root)."""
    fifo = files / "pipe"
    os.mkfifo(fifo)
    import threading
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    p = proc("encode", files / "rgb.png", "-s", "4", "-o", fifo)
    reader.join(60)
    assert p.returncode == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == [codec.encode(files / "rgb.png", scale=4)]


@pytest.mark.parametrize("sig,code,said", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted"),
                                          ("SIGHUP", 129, "hung up")])
def test_a_signal_ends_with_one_line_and_removes_the_copy_of_stdin(files, tmp_path, sig, code, said):
    import time
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    big = files / "big.png"
    Image.fromarray(gradient_image(384, 512)).save(big)
    with open(big, "rb") as stdin:
        p = subprocess.Popen([sys.executable, "-m", "rescodec.cli", "encode", "-", "-o", files / "big.rsc",
                              "--size", "20000"], stdin=stdin, stderr=subprocess.PIPE, cwd=REPO,
                             env={**os.environ, "TMPDIR": str(tmp)},   # SIGINT as at a terminal:
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while not list(tmp.glob("rescodec-stdin-*")) and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert list(tmp.glob("rescodec-stdin-*")), "the encode ended before its copy of stdin was seen"
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=120)
    assert p.returncode == code and err.decode() == f"rescodec: error: {said}\n"
    assert not list(tmp.glob("rescodec-stdin-*"))


def test_decode_and_thumb_write_png_to_dev_null(files):
    """Without --force: were it taken for a file, the command would stop at "exists"."""
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    for cmd in ("decode", "thumb"):
        res = rsc(cmd, files / "rgb.rsc", "-o", "/dev/null")
        assert res.exit_code == 0, res.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("args", [["encode", "X", "-q", "abc"], ["encode", "X", "-s", "3"],
                                  ["encode", "X", "--no-such-option"], ["compare", "X", "-q", "101"],
                                  ["decode"]])
def test_usage_errors_are_one_line(files, args):
    p = proc(*[files / "rgb.png" if a == "X" else a for a in args])
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and err[0].startswith("rescodec: error: "), err
    assert err[0].endswith("--help'")


@pytest.mark.parametrize("args", [["encode", "X", "-o", ""], ["encode", ""], ["decode", "", "-o", "a.png"],
                                  ["thumb", ""]])
def test_an_empty_name_is_a_usage_error_not_the_current_folder(files, args, monkeypatch):
    """Path("") is ".": an empty input would code every photo of the current folder."""
    monkeypatch.chdir(files)
    res = rsc(*[files / "rgb.png" if a == "X" else a for a in args])
    assert res.exit_code == 2 and errors(res) == [errors(res)[0]] and "empty name" in res.stderr
    assert sorted(p.name for p in files.iterdir()) == ["rgb.png", "rgb.rsc", "rgba.png", "rgba.rsc"]


def test_write_errors_name_the_output_not_the_temporary_file(files, monkeypatch):
    """A file where the output's folder should be, or a folder that cannot
    hold files: one line that names the output."""
    res = rsc("encode", files / "rgb.png", "-o", files / "rgb.png" / "sub" / "x.rsc")
    assert res.exit_code == 1 and errors(res) == [
        f"rescodec: error: {files / 'rgb.png' / 'sub' / 'x.rsc'}: a file where the path needs a folder"]
    if os.path.isdir("/proc/self"):
        res = rsc("encode", files / "rgb.png", "-o", "/proc/self/x.rsc")   # refused before the work
        assert res.exit_code == 1 and errors(res) == ["rescodec: error: /proc/self: permission denied; nothing written"]
        monkeypatch.setattr(os, "access", lambda *a, **kw: True)   # as where access() cannot tell: the write fails
        res = rsc("encode", files / "rgb.png", "-o", "/proc/self/x.rsc")
        assert res.exit_code == 1 and ".tmp" not in res.stderr and "/proc/self/x.rsc:" in res.stderr


@pytest.mark.parametrize("ext", [".jpg", ".gif", ".dng", ".CR2", ".heic", ".jxl"])
def test_encode_refuses_an_image_extension_for_its_output(files, ext):
    """With --force it would have put .rsc data in place of the image, or of
    a camera's raw file, which Pillow cannot read."""
    (files / f"keep{ext}").write_bytes(b"a photo")
    before = (files / f"keep{ext}").read_bytes()
    res = rsc("encode", files / "rgb.png", "-o", files / f"keep{ext}", "--force")
    assert res.exit_code == 2 and f"encode writes .rsc files, not {ext}" in res.stderr
    assert (files / f"keep{ext}").read_bytes() == before


def test_thumb_keeps_the_icc_profile_and_the_grey_and_says_alpha_is_left_out(files):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(gradient_image(40, 56)).save(files / "icc.png", icc_profile=icc)
    Image.fromarray(gradient_image(40, 56)).convert("L").save(files / "grey.png")
    for n in ("icc", "grey"):
        (files / f"{n}.rsc").write_bytes(codec.encode(files / f"{n}.png", scale=4))
    for n, mode in (("icc", "RGB"), ("grey", "L"), ("rgba", "RGB")):
        res = rsc("thumb", files / f"{n}.rsc", "-o", files / f"t-{n}.png")
        assert res.exit_code == 0, res.stderr
        with Image.open(files / f"t-{n}.png") as im:
            assert im.mode == mode and im.info.get("icc_profile") == (icc if n == "icc" else None)
        assert ("no alpha channel: left out" in res.stderr) == (n == "rgba")


@pytest.mark.parametrize("jobs", [1, 2])
def test_skip_existing_codes_only_the_new_files(files, jobs):
    """A re-run over a folder failed on every file already coded (exit 1)."""
    src = files / "in"
    src.mkdir()
    for n in ("a", "b", "c", "d"):   # b and d in two workers with -j 2
        Image.fromarray(gradient_image(24, 32, seed=ord(n))).save(src / f"{n}.png")
    out = files / "out"
    out.mkdir()
    (out / "a.rsc").write_bytes(b"mine")
    (out / "c.rsc").write_bytes(b"mine too")
    res = rsc("encode", src, "-o", out, "--skip-existing", "-q", "10", "-j", jobs)
    assert res.exit_code == 0, res.stderr
    assert (out / "a.rsc").read_bytes() == b"mine" and (out / "c.rsc").read_bytes() == b"mine too"
    assert codec.info((out / "b.rsc").read_bytes())["width"] == codec.info((out / "d.rsc").read_bytes())["width"] == 32
    assert f"{src / 'a.png'} -> {out / 'a.rsc'}  skipped: it exists" in res.stdout
    assert "2 of 4 files done, 2 skipped (their outputs exist), 0 failed" in res.stdout
    res = rsc("encode", src, "-o", out, "--skip-existing", "--json")
    rows = json.loads(res.stdout)
    assert res.exit_code == 0 and [r.get("skipped") for r in rows] == ["the output exists"] * 4
    res = rsc("decode", files / "rgb.rsc", "-o", files / "rgb.png", "--skip-existing")   # one file, too
    assert res.exit_code == 0 and "skipped: it exists" in res.stdout
    res = rsc("decode", files / "missing.rsc", "-o", files / "rgb.png", "--skip-existing")   # a typo fails
    assert res.exit_code == 1 and "missing.rsc: no such file or directory" in res.stderr
    os.symlink(files / "nowhere", out / "e.rsc")   # a link that leads nowhere is there too
    Image.fromarray(gradient_image(24, 32)).save(src / "e.png")
    res = rsc("encode", src, "-o", out, "--skip-existing")
    assert res.exit_code == 0 and "0 of 5 files done, 5 skipped" in res.stdout and os.path.islink(out / "e.rsc")
    res = rsc("thumb", files / "rgb.rsc", "--skip-existing", "--force")
    assert res.exit_code == 2 and errors(res) == ["rescodec: error: --force and --skip-existing cannot be used together"]


def test_threads_sets_torchs_threads_and_the_decode_is_the_same(files):
    import torch
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            res = rsc("decode", files / "rgb.rsc", "-o", files / f"t{n}.png", "--threads", n)
            assert res.exit_code == 0 and torch.get_num_threads() == n
            outs.append((files / f"t{n}.png").read_bytes())
        assert outs[0] == outs[1]
        assert rsc("encode", files / "rgb.png", "-o", files / "t.rsc", "--threads", 0).exit_code == 2
    finally:
        torch.set_num_threads(before)


def test_tile_bar_shows_a_large_photos_stages_on_a_terminal(monkeypatch):
    """A 24 MP decode took 30-60 s with nothing on the screen."""
    from rescodec import tiling

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    for shown, tty in ((True, True), (False, True), (True, False)):
        err = Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with cli._tile_bar(shown, "decode x.rsc"):
            for done in (1, 2, 3):
                tiling._done("quick", done, 3)   # done within a second: no bar
            for done in (1, 2, 3):
                time.sleep(0.6 if shown and tty else 0)
                tiling._done("restoration", done, 3)
            tiling._done("one tile", 1, 1)
        said = err.getvalue()
        assert ("decode x.rsc: restoration" in said and "3/3" in said) == (shown and tty)
        assert "one tile" not in said and "quick" not in said
    bars = []   # a second pass of a stage (each decode of a --psnr search) gets a bar of its own

    class Bar:
        def __init__(self, total, desc, **kw):
            self.n, self.closed = 0, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr("tqdm.tqdm", Bar)
    with cli._tile_bar(True, "encode x.png"):
        for done in (1, 2, 3, 1, 2):
            tiling._done("restoration", done, 3)
    assert [(b.n, b.closed) for b in bars] == [(3, True), (2, True)]
    assert tiling._REPORT.get() is None


def test_info_takes_several_files(files):
    """`rescodec info *.rsc`, as identify and exiftool take them; a file that
    fails is said, and the others are shown (exit 1)."""
    one = rsc("info", files / "rgb.rsc").stdout
    res = rsc("info", files / "rgb.rsc", files / "missing.rsc", files / "rgba.rsc")
    assert res.exit_code == 1 and errors(res) == [f"rescodec: error: {files / 'missing.rsc'}: no such file or directory"]
    assert res.stdout.startswith(f"==> {files / 'rgb.rsc'} <==\n{one}\n==> {files / 'rgba.rsc'} <==\n")
    (files / "adir").mkdir()
    res = rsc("info", files / "rgb.rsc", files / "adir", files / "rgba.rsc", "--json")   # a folder among them
    rows = json.loads(res.stdout)
    assert res.exit_code == 1 and [r["file"] for r in rows] == [str(files / n) for n in ("rgb.rsc", "adir", "rgba.rsc")]
    assert rows[1] == {"file": str(files / "adir"), "error": f"{files / 'adir'}: is a directory"}
    rows = json.loads(rsc("info", files / "rgb.rsc", files / "rgba.rsc", "--json").stdout)
    assert [r["file"] for r in rows] == [str(files / "rgb.rsc"), str(files / "rgba.rsc")]
    assert rows[0] == json.loads(rsc("info", files / "rgb.rsc", "--json").stdout)   # one file: its "file" too
    assert rsc("info", "-", files / "rgb.rsc").exit_code == 2
    res = rsc("info", files / "missing.rsc", "--json")   # one file that fails: JSON still, with its error
    assert res.exit_code == 1 and json.loads(res.stdout) == {
        "file": str(files / "missing.rsc"), "error": f"{files / 'missing.rsc'}: no such file or directory"}


def test_a_new_users_mistakes_are_said_as_what_they_are(files, monkeypatch):
    """From a review as a user new to rescodec: a PNG given to decode was
    "X.decoded.png exists (use --force ...)", then "bad magic"; -o /dev/null
    for several inputs was called a file; a folder that cannot be written was
    found after every file's encode, once per file; encode's -q 101 did not
    name -q; thumb -v printed nothing more; train's mistakes were argparse's
    forty lines of usage; the command list cut every summary short."""
    (files / "rgb.decoded.png").write_bytes(b"keep")
    res = rsc("decode", files / "rgb.png")
    assert res.exit_code == 1 and errors(res) == [
        f"rescodec: error: {files / 'rgb.png'}: not an .rsc file but an image; to encode it: rescodec encode"]
    assert (files / "rgb.decoded.png").read_bytes() == b"keep"
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", os.devnull)
    assert res.exit_code == 2 and "/dev/null is a device, but with several inputs" in res.stderr
    res = rsc("encode", files / "rgb.png", "-q", "101", "-o", files / "q.rsc")
    assert res.exit_code == 2 and "'-q' / '--quality': 101 is not in the range 0<=x<=100" in res.stderr
    res = rsc("thumb", files / "rgb.rsc", "-o", files / "t.png", "-v")
    model = rescodec.info(files / "rgb.rsc")["model"]
    assert res.exit_code == 0 and res.stdout.splitlines()[1] == f"  1/4 of 56x40, model {model}"
    assert model.startswith("rescodec-x4")
    summaries = [l for l in rsc("--help").stdout.split("Commands:")[1].splitlines() if l.strip()]
    assert len(summaries) == 9 and not any(l.endswith("...") for l in summaries)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == files else real(p, m, **kw))
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", files / "new")
    assert res.exit_code == 1 and errors(res) == [f"rescodec: error: {files}: permission denied; nothing written"]
    assert not (files / "new").exists()
    (files / "rgb.rsc").write_bytes(codec.encode(files / "rgb.png", scale=4))   # --skip-existing there: nothing
    (files / "rgba.rsc").write_bytes(codec.encode(files / "rgba.png", scale=4))   # written, nothing refused
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "--skip-existing")
    assert res.exit_code == 0 and "2 skipped" in res.stdout, res.output
    monkeypatch.undo()
    p = proc("decode", "-", "-o", files / "rgb.decoded.png", stdin=subprocess.DEVNULL)   # a stream: the
    assert p.returncode == 1 and b"rgb.decoded.png exists" in p.stderr   # output first, before it is read
    p = proc("train", "--bogus")
    assert p.returncode == 2 and p.stderr.decode().splitlines() == [
        "error: the following arguments are required: --out; see 'rescodec train --help'"]


def test_info_check_finds_a_damaged_section(files):
    """info read headers and sizes only, so a file whose small picture is
    damaged was shown as fine; --check decodes every section (no network)."""
    data = (files / "rgb.rsc").read_bytes()
    f = codec.unpack(data)
    lr = f.sections[container.SECTION_LR]
    assert lr[0] == container.AV1_SHORT and lr[4] >> 3 & 15 == 1   # its sequence header, then the frame
    (files / "bad.rsc").write_bytes(container.pack(f.header, lr[:6 + lr[5]], f.sections[container.SECTION_MASK],
                                                   store_name=False))
    assert rsc("info", files / "bad.rsc").exit_code == 0
    res = rsc("info", "--check", files / "bad.rsc", files / "rgb.rsc")
    assert res.exit_code == 1 and errors(res) == [f"rescodec: error: {files / 'bad.rsc'}: corrupt .rsc file "
                                                  "(LR section: an AV1 item of 0 frames, not 1)"]
    assert f"==> {files / 'rgb.rsc'} <==" in res.stdout and re.search(r"^check +ok$", res.stdout, re.M)
    assert json.loads(rsc("info", "--check", files / "rgb.rsc", "--json").stdout)["check"] == "ok"


def test_print_psnr_is_the_decodes_psnr(files):
    """cwebp's -print_psnr: RGB against the image, a grey image's one channel."""
    Image.fromarray(gradient_image(40, 56)).convert("L").save(files / "g.png")
    for name in ("rgb", "g"):
        res = rsc("encode", files / f"{name}.png", "-o", files / f"p{name}.rsc", "-q", "20", "--print-psnr", "--json")
        assert res.exit_code == 0, res.stderr
        got = json.loads(res.stdout)[0]["psnr"]
        src = np.asarray(Image.open(files / f"{name}.png"), np.float64)
        out = np.asarray(codec.decode((files / f"p{name}.rsc").read_bytes()), np.float64)
        assert got == pytest.approx(10 * np.log10(255 ** 2 / ((src - out) ** 2).mean()), abs=1e-9)
    res = rsc("encode", files / "rgb.png", "-o", files / "q.rsc", "-q", "20", "--print-psnr")
    assert re.search(r" \d+\.\d\d dB  \(x", res.stdout)
    # from a pipe, read once; with --psnr, the search's own measure
    res = rsc("encode", "-", "-o", files / "s.rsc", "--psnr", "30", "--print-psnr", "--json",
              input=(files / "rgb.png").read_bytes())
    row = json.loads(res.stdout)[0]
    out = np.asarray(codec.decode((files / "s.rsc").read_bytes()), np.float64)
    src = np.asarray(Image.open(files / "rgb.png"), np.float64)
    assert res.exit_code == 0 and row["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / ((src - out) ** 2).mean()))
    with open(files / "s.rsc", "rb") as fo:   # a file object, read once
        assert codec.psnr(files / "rgb.png", fo) == pytest.approx(row["psnr"])
    with pytest.raises(ValueError, match="the image is 17x33, the file 56x40"):
        codec.psnr(files / "rgba.png", (files / "s.rsc").read_bytes())
    assert "psnr" not in json.loads(rsc("encode", files / "rgb.png", "-o", files / "r.rsc", "--json").stdout)[0]


def test_size_takes_units(files):
    """--size 20k, as ImageMagick's jpeg:extent takes 20kb; k is 1000, KiB 1024."""
    import click
    for text, n in (("3000", 3000), ("3k", 3000), ("3kB", 3000), ("2.5KiB", 2560), ("1.5M", 1_500_000),
                    ("2MiB", 2 << 20), ("0", 0)):
        assert cli._BYTES.convert(text, None, None) == n
    for bad in ("1.5", "3kk", "1e3", "k", "", "3 GB", "1" + "0" * 400 + ".5k"):
        with pytest.raises(click.BadParameter, match="is not a number of bytes|is beyond any file's size"):
            cli._BYTES.convert(bad, None, None)
    a = rsc("encode", files / "rgb.png", "-o", files / "a.rsc", "--size", "0.4k")
    b = rsc("encode", files / "rgb.png", "-o", files / "b.rsc", "--size", "400")
    assert a.exit_code == b.exit_code == 0 and (files / "a.rsc").read_bytes() == (files / "b.rsc").read_bytes()
    res = rsc("encode", files / "rgb.png", "-o", files / "c.rsc", "--size", "0k")   # settings' own check
    assert res.exit_code == 2 and "target size must be a positive number of bytes, got 0" in res.stderr


def test_quality_of_a_jpeg_or_webp_output(files):
    """decode/thumb -q (avifdec's, djxl's -q): JPEG 95 and lossless WebP by default."""
    sizes = {}
    for args in ([], ["-q", "60"]):
        for ext in (".jpg", ".webp"):
            out = files / f"o{len(args)}{ext}"
            res = rsc("decode", files / "rgb.rsc", "-o", out, *args)
            assert res.exit_code == 0 and "-q" not in res.stderr
            sizes[len(args), ext] = out.stat().st_size
    assert sizes[2, ".jpg"] < sizes[0, ".jpg"] and sizes[2, ".webp"] < sizes[0, ".webp"] / 2
    with Image.open(files / "o2.webp") as lossy, Image.open(files / "o0.webp") as lossless:
        assert np.array_equal(np.asarray(lossless), np.asarray(codec.decode((files / "rgb.rsc").read_bytes())))
        assert not np.array_equal(np.asarray(lossy), np.asarray(lossless))
    res = rsc("decode", files / "rgb.rsc", "-o", files / "o.png", "-q", "60")
    assert res.exit_code == 0 and "-q sets the quality of a .jpg or .webp output: PNG is lossless" in res.stderr
    res = rsc("thumb", files / "rgb.rsc", "-o", files / "t.jpg", "-q", "30")
    assert res.exit_code == 0 and res.stderr == ""
    assert rsc("decode", files / "rgb.rsc", "-o", files / "x.jpg", "-q", "101").exit_code == 2


def test_thumb_to_avif_writes_the_stored_avif_with_its_icc_profile(files):
    """Not coded again: the pixels are the small picture's own, and an x1
    file's AVIF is the full-size photo that decode --fast gives."""
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(gradient_image(40, 56)).save(files / "icc.png", icc_profile=icc)
    (files / "icc.rsc").write_bytes(codec.encode(files / "icc.png", scale=4))
    (files / "x1.rsc").write_bytes(codec.encode(files / "rgb.png", scale=1, lr_quality=30))
    (files / "ll.rsc").write_bytes(codec.encode(files / "rgb.png", scale=8))   # a lossless small picture
    for n, icc_kept in (("icc", icc), ("rgba", None), ("x1", None)):
        res = rsc("thumb", files / f"{n}.rsc", "-o", files / f"{n}.avif")
        assert res.exit_code == 0, res.stderr
        assert ("no alpha channel: left out" in res.stderr) == (n == "rgba")
        with Image.open(files / f"{n}.avif") as im:
            assert im.format == "AVIF" and im.info.get("icc_profile") == icc_kept
            assert np.array_equal(np.asarray(im.convert("RGB")), codec.thumbnail((files / f"{n}.rsc").read_bytes()))
    assert Image.open(files / "x1.avif").size == (56, 40)
    assert np.array_equal(np.asarray(Image.open(files / "x1.avif").convert("RGB")),
                          np.asarray(codec.decode((files / "x1.rsc").read_bytes(), fast=True)))
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    grey_icc = grey_icc[:16] + b"GRAY" + grey_icc[20:]
    Image.fromarray(gradient_image(40, 56)).convert("L").save(files / "g.png", icc_profile=grey_icc)
    (files / "g.rsc").write_bytes(codec.encode(files / "g.png", scale=4))
    res = rsc("thumb", files / "g.rsc", "-o", files / "g.avif")   # AVIF holds it as RGB
    assert res.exit_code == 0 and "the grey ICC profile does not describe: left out" in res.stderr
    assert not Image.open(files / "g.avif").info.get("icc_profile")
    res = rsc("thumb", files / "ll.rsc", "-o", files / "ll.avif")
    assert res.exit_code == 1 and "stored losslessly (x8, lossless), not as AVIF: write .png" in res.stderr
    res = rsc("decode", files / "icc.rsc", "-o", files / "d.avif")
    assert res.exit_code == 2 and "thumb -o NAME.avif writes the AVIF stored inside" in res.stderr
    assert not {"ll.avif", "d.avif"} & {p.name for p in files.iterdir()}


def test_thumbnail_avif_never_returns_an_avif_that_does_not_open(files):
    """Damaged AV1 data: a typed error, or an AVIF that Pillow opens (70 of 300
    damaged files gave an AVIF no viewer opened)."""
    import random
    from rescodec import container
    from rescodec.errors import RscError
    f = container.unpack(codec.encode(gradient_image(96, 128), quality=20))
    rng, typed = random.Random(3), 0
    for _ in range(40):
        lr = bytearray(f.sections[container.SECTION_LR])
        for _ in range(2):
            lr[rng.randrange(20, len(lr))] ^= rng.randrange(1, 256)
        data = container.pack(f.header, bytes(lr), f.sections[container.SECTION_MASK])
        try:
            avif = codec.thumbnail_avif(data)[0]
        except RscError:
            typed += 1
            continue
        with Image.open(io.BytesIO(avif)) as im:
            im.load()
    assert typed


def test_info_shows_the_fields_a_file_has_and_json_all_of_them(files):
    x1 = files / "x1.rsc"
    x1.write_bytes(codec.encode(files / "rgb.png", scale=1, lr_quality=70))   # AVIF 70: a gain map
    lines = rsc("info", x1).stdout.splitlines()
    keys = {line.split()[0] for line in lines}
    assert not keys & {"mask_threshold", "mask_coder", "z_seed", "z_temperature", "lr_step", "lr_space"}
    assert {"lr_codec", "gain_map"} <= keys and any(l.startswith("section gain map ") for l in lines)
    assert "lr_codec                 av1 (--lr-codec avif, stored without AVIF's boxes)" in lines
    lines = rsc("info", files / "rgb.rsc").stdout.splitlines()   # x4, AVIF: a mask and a latent
    assert {"mask_threshold", "z_temperature"} <= {line.split()[0] for line in lines}
    d = json.loads(rsc("info", x1, "--json").stdout)
    assert set(d) >= {"mask_threshold", "z_seed", "lr_step"} and d["lr_codec"] == "av1"


def test_json_lists_the_files_that_failed(files):
    res = rsc("encode", files / "rgb.png", files / "missing.png", "-o", files / "out", "--json")
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert [r["input"] for r in rows] == [str(files / "rgb.png"), str(files / "missing.png")]
    assert "error" not in rows[0] and rows[1]["error"].endswith("missing.png: no such file or directory")
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", files / "out", "--json", "--force")
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 2   # stdout: the JSON alone
    assert "2 of 2 files done" in res.stderr


def test_ctrl_c_with_workers_is_one_line(files):
    """-j 3 for two files: a busy and an idle worker get the Ctrl-C too (the
    terminal signals the process group) and end without a traceback each."""
    import time
    for n in (1, 2):
        Image.fromarray(gradient_image(384, 512, seed=n)).save(files / f"big{n}.png")
    p = subprocess.Popen([sys.executable, "-m", "rescodec.cli", "encode", files / "big1.png", files / "big2.png",
                          "-j", "3", "--size", "20000", "-o", files / "out"], stderr=subprocess.PIPE, cwd=REPO,
                         start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)   # the workers are up
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    lines = err.decode().splitlines()
    assert p.returncode == 130 and len(lines) == 2 and lines[1] == "rescodec: error: interrupted", lines
    assert re.fullmatch(r"(\d) of 2 files done, 0 failed, (\d) not done; .*", lines[0]), lines   # the summary
    assert not [f for f in (files / "out").rglob("*") if f.name.endswith(".tmp")]


def test_several_inputs_and_an_output_named_like_a_file_is_a_usage_error(files):
    """It made a folder called out.rsc; a trailing / still asks for one."""
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", files / "out.rsc")
    assert res.exit_code == 2 and "looks like a file name" in res.stderr and not (files / "out.rsc").exists()
    res = rsc("decode", files / "rgb.rsc", files / "rgba.rsc", "-o", files / "out.png")
    assert res.exit_code == 2 and not (files / "out.png").exists()
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", f"{files / 'out.rsc'}/")
    assert res.exit_code == 0 and (files / "out.rsc" / "rgb.rsc").exists()


def test_grey_to_webp_leaves_out_the_grey_icc_profile(files):
    """WebP holds grey pixels as RGB, which a GRAY profile does not describe."""
    from PIL import ImageCms
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    grey_icc = grey_icc[:16] + b"GRAY" + grey_icc[20:]
    Image.fromarray(gradient_image(40, 56)).convert("L").save(files / "g.png", icc_profile=grey_icc)
    (files / "g.rsc").write_bytes(codec.encode(files / "g.png", scale=4))
    assert codec.metadata((files / "g.rsc").read_bytes()).get("icc_profile") == grey_icc
    res = rsc("decode", files / "g.rsc", "-o", files / "g.webp")
    assert res.exit_code == 0 and "grey ICC profile does not describe: left out" in res.stderr
    with Image.open(files / "g.webp") as im:
        assert "icc_profile" not in im.info or not im.info["icc_profile"]
    res = rsc("decode", files / "g.rsc", "-o", files / "g2.png")
    assert "ICC" not in res.stderr


def test_an_output_format_too_small_for_the_picture_is_refused_before_the_decode(files, monkeypatch):
    """libjpeg writes at most 65500 pixels a side and libwebp 16383: a wider
    decode to .jpg failed after the whole decode with "broken data stream"."""
    from rescodec import lossless
    monkeypatch.setitem(lossless.SIDE_LIMITS, "JPEG", ("JPEG", 55))
    monkeypatch.setitem(lossless.SIDE_LIMITS, "WEBP", ("WebP", 13))
    monkeypatch.setattr(codec, "decode", lambda *a, **k: pytest.fail("decoded"))
    res = rsc("decode", files / "rgb.rsc", "-o", files / "rgb.jpg")
    assert res.exit_code == 1 and errors(res) == [
        f"rescodec: error: {files / 'rgb.rsc'}: JPEG holds at most 55 pixels a side, not 56x40: "
        f"write .png or .tif instead of {files / 'rgb.jpg'}"]
    assert not (files / "rgb.jpg").exists()
    res = rsc("thumb", files / "rgb.rsc", "-o", files / "t.webp")   # the small picture is 14x10
    assert res.exit_code == 1 and "WebP holds at most 13 pixels a side, not 14x10" in res.stderr
    assert not (files / "t.webp").exists()
    monkeypatch.undo()
    monkeypatch.setitem(lossless.SIDE_LIMITS, "JPEG", ("JPEG", 56))   # a side of 56 fits
    assert rsc("decode", files / "rgb.rsc", "-o", files / "rgb.jpg").exit_code == 0


def test_an_output_named_as_the_last_input_is_a_usage_error_before_any_work(files):
    """avifenc and cwebp -o take `IN OUT`: rescodec wrote IN's own output
    beside it, then failed on OUT as a missing input."""
    for args in (["encode", files / "rgb.png", files / "out.rsc"], ["decode", files / "rgb.rsc", files / "o.PNG"],
                 ["thumb", files / "rgb.rsc", files / "t.jpg"]):
        res = rsc(*args)
        assert res.exit_code == 2 and errors(res) == [
            f"rescodec: error: {args[-1]}: no such file; to name the output, give -o {args[-1]}"]
    assert not {"rgb.decoded.png", "rgb.thumb.png"} & {p.name for p in files.iterdir()}
    res = rsc("encode", files / "rgb.png", files / "rgba.png", files / "out.rsc")
    assert res.exit_code == 2 and errors(res) == [
        f"rescodec: error: {files / 'out.rsc'}: no such file; -o names the outputs' folder for several inputs"]
    res = rsc("decode", files / "rgb.rsc", files / "out.avif")   # decode writes no .avif: a missing input
    assert res.exit_code == 1 and (files / "rgb.decoded.png").exists()
    (files / "out.rsc").write_bytes((files / "rgb.rsc").read_bytes())   # there: an input like any other
    res = rsc("decode", files / "rgb.rsc", files / "out.rsc", "--force")
    assert res.exit_code == 0 and (files / "out.decoded.png").exists()


def test_shell_completion_of_the_entry_point():
    """The README's completion line: click's, through run()'s own guard."""
    env = {**os.environ, "_RESCODEC_COMPLETE": "bash_complete", "COMP_WORDS": "rescodec encode --me",
           "COMP_CWORD": "2"}
    p = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'rescodec'; "
                        "from rescodec.cli import run; run()"], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0 and p.stdout.decode().split() == ["plain,--metadata"], p.stderr


def test_models_says_a_malformed_manifest_in_one_line(tmp_path):
    """And so does decode: a sha256 that is not hex was a bare ValueError in
    every unpack (the model's name from its hash)."""
    made = tmp_path / "made.rsc"
    made.write_bytes(rescodec.encode(gradient_image(24, 16), quality=20))
    for bad, said in (({"a": {"scale": None}, "b": {"scale": 2}}, "scale None"), ({"a": [1, 2]}, "not an object"),
                      ({"a": {"sha256": "zz"}}, "sha256 is not 64 hex digits"), ({"a": {"file": 3}}, "file 3"),
                      ({"a": {"train_config": [1]}}, "train_config is not an object")):
        (tmp_path / "manifest.json").write_text(json.dumps({"models": bad}))
        for args in (["models"], ["models", "--json"], ["decode", made, "-o", tmp_path / "x.png"]):
            res = rsc(*args, env={"RESCODEC_WEIGHTS": str(tmp_path)})
            assert res.exit_code == 1 and len(errors(res)) == 1, (args, res.stderr)
            assert f"a malformed entry 'a' ({said})" in res.stderr


def test_models_notes_what_the_encoder_would_refuse(tmp_path):
    """Overlapping lr_qualities, said once, and scales with no model."""
    from rescodec import weights
    real = weights.manifest()
    keep = {n: dict(real[n]) for n in ("rescodec-x2-avif-v12", "rescodec-x2-avif-v14")}
    keep["rescodec-x2-avif-v14"]["lr_qualities"] = [0, 12]
    (tmp_path / "manifest.json").write_text(json.dumps({"models": keep}))
    res = rsc("models", env={"RESCODEC_WEIGHTS": str(tmp_path)})
    notes = [l for l in res.stderr.splitlines() if l.startswith("rescodec: note: ")]
    assert res.exit_code == 0 and len([n for n in notes if "overlap at" in n]) == 1
    assert any("no model for scale x1" in n for n in notes)
    assert not rsc("models").stderr   # the shipped manifest


def test_messages_name_what_they_are_about(files):
    res = rsc("decode", files / "rgba.rsc", "-o", files / "a.jpg", "--json")
    assert json.loads(res.stdout)[0]["mode"] == "RGB"   # what was written: JPEG has no alpha
    res = rsc("decode", files / "rgba.rsc", "-o", files / "b.jpg")
    assert " RGB  (" in res.stdout
    if os.path.exists("/dev/full"):
        res = rsc("encode", files / "rgb.png", "-o", "/dev/full", "--force")
        assert errors(res) == ["rescodec: error: /dev/full: no space left on device"]
    res = rsc("encode", files / "rgb.png", "-o", f"{files / 'rgb.rsc'}/")
    assert errors(res) == [f"rescodec: error: {files / 'rgb.rsc'} is a file, but -o ending in / names a folder"]
    for cmd in ("info", "compare"):
        assert rsc(cmd, "").exit_code == 2 and errors(rsc(cmd, "")) == ["rescodec: error: an empty name"]
    empty = files / "empty"
    empty.mkdir()
    res = rsc("encode", empty, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout) == []
    res = rsc("encode", files / "rgb.png", "-q", "95", "-v", "-o", files / "x1.rsc")
    assert "gain map" in res.stdout and "mask" not in res.stdout


def test_compare_reads_stdin_says_what_encode_says_and_writes_strict_json(files):
    frames = [Image.new("RGB", (48, 32), (0, 0, 0)), Image.new("RGB", (48, 32), (0, 0, 9))]
    frames[0].save(files / "two.gif", save_all=True, append_images=frames[1:])
    res = rsc("compare", "-", "--json", input=(files / "two.gif").read_bytes())
    assert res.exit_code == 0, res.stderr
    json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))   # a flat image: exact codecs
    assert "rescodec: note: <stdin>: 2 frames: only the first is coded" in res.stderr


def test_a_path_that_cannot_be_opened_is_one_line_naming_it_for_encode_and_decode(files):
    """As the system says it, the same for both: encode said "no such file"
    for a symlink loop."""
    os.symlink(files / "loop2", files / "loop1")
    os.symlink(files / "loop1", files / "loop2")
    for name, said in (("missing", "no such file or directory"), ("loop1", "too many levels of symbolic links")):
        for cmd, ext, out in (("encode", ".png", "x.rsc"), ("decode", ".rsc", "x.png")):
            path = files / name if name == "loop1" else files / (name + ext)
            res = rsc(cmd, path, "-o", files / "out" / out)
            assert res.exit_code == 1 and errors(res) == [f"rescodec: error: {path}: {said}"], res.stderr


def test_a_reader_that_leaves_early_ends_the_command_as_cat_ends_not_in_success(files):
    """A pipe takes part of a write without an error when its reader leaves:
    `decode -o - | head -c 100` said the file was written, and exit 0; then
    it said "<stdout>: broken pipe" and exit 1, noise after `info *.rsc |
    head` that cat and cwebp do not make: 141 and no message, as SIGPIPE
    ends them; and with -j, the workers end too, and their files are whole."""
    Image.fromarray(gradient_image(320, 480)).save(files / "big.png")
    (files / "big.rsc").write_bytes(codec.encode(files / "big.png", scale=4))
    p = subprocess.Popen([sys.executable, "-m", "rescodec.cli", "decode", files / "big.rsc", "-o", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert len(p.stdout.read(100)) == 100   # well under the PNG (and a pipe's buffer, 64 KB)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(120) == 141 and err == "", err
    (files / "b.rsc").write_bytes((files / "big.rsc").read_bytes())
    shell = subprocess.run(f"{sys.executable} -m rescodec.cli info big.rsc b.rsc | head -1; "
                           "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", cwd=files,
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert shell.stdout.splitlines()[-1] == "141" and shell.stderr == "", shell
    for cmd in ("--help | true", f"info --json {' '.join(['big.rsc'] * 400)} | head -c 10"):
        # click's own exit 1 on a broken pipe; a --json of 200 KB cut short was exit 0, output lost
        shell = subprocess.run(f"{sys.executable} -m rescodec.cli {cmd} >/dev/null; echo ${{PIPESTATUS[0]}}",
                               shell=True, executable="/bin/bash", cwd=files, capture_output=True, text=True,
                               timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert shell.stdout.splitlines()[-1] == "141" and shell.stderr == "", (cmd, shell)
    many = files / "many-for-head"
    many.mkdir()
    for i in range(6):
        Image.fromarray(gradient_image(64, 96, seed=i)).save(many / f"{i}.png")
    shell = subprocess.run(f"{sys.executable} -m rescodec.cli encode -j 2 {many} -o {many}-out -q 30 | head -1; "
                           "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", cwd=files,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert shell.stdout.splitlines()[-1] == "141" and shell.stderr == "", shell
    time.sleep(1)
    def cmdline(pid):
        try:
            return open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            return b""
    left = [p for p in os.listdir("/proc") if p.isdigit() and f"{many}-out".encode() in cmdline(p)]
    assert left == [], left   # SIGPIPE itself ended the parent at once, and the workers went on, orphaned
    for out in (many.parent / f"{many.name}-out").iterdir():
        assert out.suffix == ".rsc" and codec.decode_array(out.read_bytes())[0].shape == (64, 96, 3)


def test_stdout_closed_or_full_is_one_line_naming_it(files):
    """`decode -o - >&-` was "internal error: AttributeError", `info --json > /dev/full`
    "internal error: OSError"; a write error named the input, and `info -` named "-"."""
    assert errors(rsc("info", "-", input=b"")) == ["rescodec: error: <stdin>: empty .rsc data (0 bytes)"]
    p = proc("decode", files / "rgb.rsc", "-o", "-", preexec_fn=lambda: os.close(1))
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1 and "<stdout>" in p.stderr.decode(), p.stderr
    if not os.path.exists("/dev/full"):
        return
    for args in (["info", files / "rgb.rsc", "--json"], ["info", files / "rgb.rsc"],
                 ["decode", files / "rgb.rsc", "-o", "-"],
                 ["encode", files / "rgb.png", "-o", files / "full.rsc", "--json"],   # its line to stdout
                 ["models"], ["models", "--json"], ["--help"], ["encode", "--help"]):   # were internal errors
        with open("/dev/full", "wb") as full:
            p = subprocess.run([sys.executable, "-m", "rescodec.cli", *map(str, args)], stdout=full,
                               stderr=subprocess.PIPE, timeout=300, cwd=REPO)
        assert p.returncode == 1 and p.stderr.decode().endswith(
            "rescodec: error: <stdout>: no space left on device\n"), (args, p.stderr)


def test_folders_made_for_an_output_that_fails_are_removed(files):
    """They were left behind; a folder that was there before stays."""
    (files / "was").mkdir()
    for out in (files / "newdir" / "deeper" / ("y" * 300 + ".png"), files / "was" / "new" / ("y" * 300 + ".png")):
        res = rsc("decode", files / "rgb.rsc", "-o", out)
        assert res.exit_code == 1 and errors(res)[0].endswith("file name too long"), res.stderr
    assert not (files / "newdir").exists() and not (files / "was" / "new").exists() and (files / "was").is_dir()
    res = rsc("decode", files / "rgb.rsc", "-o", files / "newdir" / "deeper" / "ok.png")
    assert res.exit_code == 0 and (files / "newdir" / "deeper" / "ok.png").is_file()


def test_a_name_that_is_not_utf8_is_printed_escaped(files, tmp_path):
    """Linux keeps any bytes in a name; printing one used to end the batch."""
    nb = tmp_path / "nb"
    nb.mkdir()
    bad = os.fsdecode(b"bad\xff.png")
    (nb / bad).write_bytes((files / "rgb.png").read_bytes())
    (nb / "good.png").write_bytes((files / "rgb.png").read_bytes())
    res = rsc("encode", nb, "-s", "4", "-o", tmp_path / "onb")
    assert res.exit_code == 0, res.stderr
    assert f"{nb}/bad\\xff.png -> {tmp_path / 'onb'}/bad\\xff.rsc" in res.stdout
    assert "2 of 2 files done" in res.stdout
    assert (tmp_path / "onb" / os.fsdecode(b"bad\xff.rsc")).is_file()
    rows = json.loads(rsc("encode", nb, "-s", "4", "-o", tmp_path / "onb2", "--json").stdout)
    assert os.fsencode(rows[0]["input"]) == os.fsencode(nb / bad)   # JSON keeps the name exactly


def test_one_file_that_fails_in_any_way_is_one_line_and_the_batch_goes_on(files, tmp_path, monkeypatch):
    """Out of memory for one big photo, or a bug: that file's line, then the others and the summary."""
    real = codec.encode_ex

    def encode_ex(path, *args, **kw):
        if path.name == "rgba.png":
            raise MemoryError()
        if path.name == "odd.png":
            raise KeyError("no such key")
        return real(path, *args, **kw)

    monkeypatch.setattr(codec, "encode_ex", encode_ex)
    (files / "odd.png").write_bytes((files / "rgb.png").read_bytes())
    out = tmp_path / "out"
    res = rsc("encode", files / "rgba.png", files / "rgb.png", "-s", "4", "-o", out, "--json")
    assert res.exit_code == 1 and errors(res) == [f"rescodec: error: {files / 'rgba.png'}: out of memory"]
    rows = json.loads(res.stdout)
    assert rows[0] == {"input": str(files / "rgba.png"), "output": str(out / "rgba.rsc"),
                       "error": f"{files / 'rgba.png'}: out of memory"}
    assert rows[1]["output"] == str(out / "rgb.rsc") and (out / "rgb.rsc").is_file()
    assert res.stderr.splitlines()[-1] == f"1 of 2 files done, 1 failed; outputs in {out}"
    res = rsc("encode", files / "odd.png", files / "rgb.png", "-s", "4", "-o", out, "--force")
    assert res.exit_code == 3 and errors(res) == [   # a bug: said, not hidden, and its own exit status
        f"rescodec: error: {files / 'odd.png'}: internal error: KeyError: 'no such key'"]
    assert "1 of 2 files done, 1 failed" in res.stderr


def test_a_summary_says_when_nothing_was_written(files, tmp_path):
    (files / "a.txt").write_text("no picture")
    res = rsc("encode", files / "a.txt", files / "missing.png", "-o", tmp_path / "out")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[-1] == f"0 of 2 files done, 2 failed; nothing written to {tmp_path / 'out'}"


def _work_or_die(src, dst, force=False):
    """A worker's task for the test below: "boom" is killed (as by the OOM
    killer) while it writes, with its temporary file on disk."""
    if src.name == "boom":
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    atomic_write.write_atomic(dst, b"data", force)
    return {"input": str(src), "output": str(dst), "line": f"{src} -> {dst}"}, []


def test_a_worker_killed_mid_batch_is_said_per_file_and_the_summary_follows(tmp_path, capsys):
    out = tmp_path / "out"
    pairs = [(tmp_path / n, out / f"{n}.rsc") for n in ("a", "boom", "c", "d")]
    pairs[1] = (tmp_path / "boom", out / "deeper" / "sub" / "boom.rsc")   # folders the killed worker made
    code = batch_run.run_each(pairs, _work_or_die, {}, as_json=True, folder=out, jobs=2)
    got = capsys.readouterr()
    rows = json.loads(got.out)
    assert code == 1 and [r["input"] for r in rows] == [str(src) for src, _ in pairs]   # every file said
    boom = rows[1]
    assert boom["error"] == f"{tmp_path / 'boom'}: not done: a worker process ended abruptly (killed, " \
                           "perhaps for lack of memory)" and boom["output"] == str(out / "deeper" / "sub" / "boom.rsc")
    for r in rows:   # each either written or said not to be
        assert ("error" in r) != Path(r["output"]).is_file()
    n = sum("error" in r for r in rows)
    assert got.err.splitlines()[-1].startswith(f"{4 - n} of 4 files done, {n} failed")
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]   # the killed worker's, removed
    assert not (out / "deeper").exists()                                 # and the folders it made, empty


@pytest.mark.parametrize("sig,code,said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_two_signals_to_a_batch_with_workers_stop_it_at_once_and_say_what_was_done(files, sig, code, said):
    """kill PID; kill PID: the parent alone gets them. The workers are stopped
    at once, not left to go on writing; the second signal does not break off
    that (it hung); the JSON and the summary say what was done. Two workers
    wait on pipes as their outputs: they never finish by themselves."""
    import threading
    import time
    frames = [Image.fromarray(gradient_image(32, 32, seed=n)) for n in (0, 1)]
    frames[0].save(files / "a.gif", save_all=True, append_images=frames[1:])
    out = files / "out"
    out.mkdir()
    for n in ("rgb", "rgba"):
        os.mkfifo(out / f"{n}.rsc")
    p = subprocess.Popen([sys.executable, "-m", "rescodec.cli", "encode", files / "a.gif", files / "rgb.png",
                          files / "rgba.png", "-s", "4", "-j", "2", "-o", out, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    guard = threading.Timer(120, os.killpg, (p.pid, signal.SIGKILL))   # a hang fails, not blocks, the test
    guard.start()
    try:
        while b"a.gif" not in (line := p.stderr.readline()):   # its note: the parent has a.gif's result
            assert line, "the command ended before a.gif was done"
        p.send_signal(getattr(signal, sig))
        time.sleep(0.1)
        p.send_signal(getattr(signal, sig))
        stdout, err = p.communicate(timeout=100)
    finally:
        guard.cancel()
    err = err.decode()
    assert p.returncode == code and "Traceback" not in err, (p.returncode, err)
    assert err.endswith(f"1 of 3 files done, 0 failed, 2 not done; outputs in {out}\nrescodec: error: {said}\n")
    assert [r["output"] for r in json.loads(stdout)] == [str(out / "a.rsc")]
    assert sorted(os.listdir(out)) == ["a.rsc", "rgb.rsc", "rgba.rsc"]    # no temporary file
    assert all(stat.S_ISFIFO(os.stat(out / n).st_mode) for n in ("rgb.rsc", "rgba.rsc"))
    deadline = time.time() + 30
    while time.time() < deadline:   # no worker left running
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the workers were left running")


def test_encode_reads_a_pipe_and_says_why_a_name_cannot_be_read(files):
    """<(cat a.png) and /dev/stdin are pipes, not files: read, as decode reads
    them; a symlink loop is said as the OS says it, not "no such file"."""
    import threading
    fifo = files / "pipe.png"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes((files / "rgb.png").read_bytes()), daemon=True)
    writer.start()
    res = rsc("encode", fifo, "-s", "4", "-o", files / "p.rsc")
    writer.join(60)
    assert res.exit_code == 0, res.stderr
    assert (files / "p.rsc").read_bytes() == codec.encode(files / "rgb.png", scale=4)
    os.symlink("loop2.png", files / "loop1.png")
    os.symlink("loop1.png", files / "loop2.png")
    res = rsc("encode", files / "loop1.png", "-o", files / "l.rsc")
    assert res.exit_code == 1 and errors(res) == [
        f"rescodec: error: {files / 'loop1.png'}: too many levels of symbolic links"]
    res = rsc("encode", "/dev/null", "-o", files / "n.rsc")   # a device, read: an empty file
    assert res.exit_code == 1 and errors(res) == ["rescodec: error: /dev/null: empty file"]
    assert not (files / "l.rsc").exists() and not (files / "n.rsc").exists()


def test_a_missing_input_is_said_missing_not_overwritten_by_its_output(files, monkeypatch):
    monkeypatch.chdir(files)
    res = rsc("encode", "nothere.rsc")
    assert res.exit_code == 1 and errors(res) == ["rescodec: error: nothere.rsc: no such file or directory"]
    res = rsc("encode", "rgb.rsc")   # there: its output would replace it
    assert res.exit_code == 2 and "would be overwritten by its own output" in res.stderr


def test_one_file_given_twice_is_coded_once_and_two_files_meeting_are_refused(files, tmp_path, monkeypatch):
    """As a.png and ./a.png, or a folder and a file in it; by their real paths."""
    monkeypatch.chdir(files)
    shots = files / "shots"
    shots.mkdir()
    for n in ("a", "b"):
        (shots / f"{n}.png").write_bytes((files / "rgb.png").read_bytes())
    res = rsc("encode", "shots/a.png", "./shots/a.png", shots / "a.png", "-s", "4", "-o", tmp_path / "o1", "--json")
    assert res.exit_code == 0, res.stderr
    assert [r["output"] for r in json.loads(res.stdout)] == [str(tmp_path / "o1" / "a.rsc")]
    res = rsc("encode", "shots", "shots/b.png", "-s", "4", "-o", tmp_path / "o2", "--json")
    assert res.exit_code == 0, res.stderr
    assert sorted(os.listdir(tmp_path / "o2")) == ["a.rsc", "b.rsc"] and len(json.loads(res.stdout)) == 2
    (files / "linked").mkdir()
    os.symlink(shots / "a.png", files / "linked" / "a.png")   # another path, the same file
    res = rsc("encode", "linked/a.png", "shots/a.png", "-s", "4", "-o", tmp_path / "o3", "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 1
    (files / "other").mkdir()
    (files / "other" / "a.png").write_bytes((files / "rgba.png").read_bytes())
    res = rsc("encode", "shots/a.png", "other/a.png", "-s", "4", "-o", tmp_path / "o4")
    assert res.exit_code == 2 and "would both be written to" in res.stderr and not (tmp_path / "o4").exists()
    (files / "other" / "b.png").write_bytes((files / "rgba.png").read_bytes())   # two clashes: both counted
    res = rsc("encode", "shots/a.png", "shots/b.png", "other/a.png", "other/b.png", "-s", "4", "-o", tmp_path / "o4")
    assert res.exit_code == 2 and errors(res) == [
        f"rescodec: error: shots/a.png and other/a.png would both be written to {tmp_path / 'o4' / 'a.rsc'} "
        "(1 more such pair); rename one or give them separate -o folders"], res.stderr
    os.symlink(files / "rgb.rsc", files / "to_rgb.rsc")   # -o naming the input by another name
    res = rsc("encode", "rgb.rsc", "-o", "to_rgb.rsc", "--force")
    assert res.exit_code == 2 and "would be overwritten by its own output" in res.stderr


def test_an_output_folder_under_a_file_is_refused_before_the_work(files, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(codec, "encode_ex", lambda *a, **kw: calls.append(a) or pytest.fail("work done"))
    (tmp_path / "afile").write_bytes(b"keep")
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-o", tmp_path / "afile" / "sub", "--json")
    assert res.exit_code == 1 and res.stdout == "" and not calls
    assert errors(res) == [f"rescodec: error: {tmp_path / 'afile' / 'sub'}: a file where the path needs a folder"]
    tree = tmp_path / "tree"
    (tree / "day2").mkdir(parents=True)
    (tree / "day2" / "b.png").write_bytes((files / "rgb.png").read_bytes())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "day2").write_bytes(b"a file")   # where the mirrored subfolder goes
    res = rsc("decode", files / "rgb.rsc", "-o", tmp_path / "afile" / "x.png")
    assert res.exit_code == 1 and "a file where the path needs a folder" in res.stderr
    res = rsc("encode", tree, "-o", tmp_path / "out")
    assert res.exit_code == 1 and not calls and errors(res) == [
        f"rescodec: error: {tmp_path / 'out' / 'day2' / 'b.rsc'}: a file where the path needs a folder"]
    assert (tmp_path / "afile").read_bytes() == b"keep"


def test_a_folder_walk_takes_what_pillow_reads_skips_hidden_names_and_says_what_it_skipped(files, tmp_path):
    shots = tmp_path / "shots"
    (shots / ".git").mkdir(parents=True)
    img = Image.fromarray(gradient_image(32, 32))
    img.save(shots / "a.gif")
    img.save(shots / "p.ppm")
    img.save(shots / ".hidden.png")
    img.save(shots / ".git" / "x.png")
    (shots / "notes.txt").write_text("not a picture")
    os.symlink("loop2.png", shots / "loop1.png")
    os.symlink("loop1.png", shots / "loop2.png")
    res = rsc("encode", shots, "-s", "4", "-o", tmp_path / "out", "--json")
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert [Path(r["input"]).name for r in rows] == ["a.gif", "loop1.png", "loop2.png", "p.ppm"]
    assert [r.get("error", "").split(": ", 1)[-1] for r in rows] == [   # a loop is said, not skipped
        "", "too many levels of symbolic links", "too many levels of symbolic links", ""]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.rsc", "p.rsc"]
    res = rsc("encode", shots / ".hidden.png", "-s", "4", "-o", tmp_path / "h.rsc")   # given by name: coded
    assert res.exit_code == 0 and (tmp_path / "h.rsc").is_file()
    for n in ("a.gif", "p.ppm", "loop1.png", "loop2.png"):
        os.remove(shots / n)
    res = rsc("encode", shots, "--json")
    assert res.exit_code == 1 and json.loads(res.stdout) == []
    assert errors(res) == [f"rescodec: error: no images in {shots} (1 file skipped: not images rescodec "
                           "reads, e.g. notes.txt; 2 hidden names skipped)"]
    res = rsc("decode", shots)
    assert errors(res) == [f"rescodec: error: no .rsc files in {shots} (1 file skipped: not .rsc files, "
                           "e.g. notes.txt; 2 hidden names skipped)"]


def test_a_folder_the_walk_cannot_list_is_a_failure_not_silence(tmp_path, monkeypatch):
    """os.walk skipped a folder it could not read (permission denied): the
    batch said every file was done.  (As root every folder reads, so the
    refusal is made here.)"""
    shots = tmp_path / "shots"
    (shots / "private").mkdir(parents=True)
    Image.fromarray(gradient_image(32, 32)).save(shots / "a.png")
    Image.fromarray(gradient_image(32, 32)).save(shots / "private" / "b.png")
    scandir = os.scandir

    def refuse(path="."):
        if os.fspath(path) == str(shots / "private"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refuse)
    said = f"rescodec: error: {shots / 'private'}: permission denied (a folder; its files were skipped)"
    res = rsc("encode", shots, "-s", "4", "-o", tmp_path / "out", "--json")
    assert res.exit_code == 1 and errors(res) == [said]
    assert [(r["input"], "error" in r) for r in json.loads(res.stdout)] == [
        (str(shots / "private"), True), (str(shots / "a.png"), False)]
    assert f"1 of 1 files done, 0 failed; 1 folder not listed; outputs in {tmp_path / 'out'}" in res.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.rsc"]
    res = rsc("encode", shots, shots, "-s", "4", "-o", tmp_path / "out", "--force")   # given twice: said once
    assert res.exit_code == 1 and errors(res) == [said] and "1 of 1 files done" in res.stderr
    os.remove(shots / "a.png")
    res = rsc("encode", shots, "-o", tmp_path / "out2")   # nothing else: both lines
    assert res.exit_code == 1 and errors(res) == [said, f"rescodec: error: no images in {shots}"]


@pytest.mark.parametrize("name", ["out", "out.bin"])
def test_encode_names_a_file_output_rsc_so_that_o_means_one_thing(files, name):
    """-o out was a file with one input and a folder with two; a file output is now named .rsc."""
    res = rsc("encode", files / "rgb.png", "-s", "4", "-o", files / name)
    assert res.exit_code == 2 and errors(res) == [
        f"rescodec: error: {files / name}: encode writes .rsc files; name the output {files / 'out'}.rsc, "
        "or end -o with / for a folder"]
    assert not (files / name).exists()
    res = rsc("encode", files / "rgb.png", "-s", "4", "-o", f"{files / name}/")
    assert res.exit_code == 0 and (files / name / "rgb.rsc").is_file()     # a folder, as with two inputs
    assert rsc("encode", files / "rgb.png", "-s", "4", "-o", files / "x.RSC").exit_code == 0


EARLY_CTRL_C = """
import os, signal, sys
sys.argv = [sys.argv[1], "--version"]   # as the console script's
class Hook:   # Ctrl-C while rescodec loads, before cli.run() puts its handlers in place
    def find_spec(self, name, path=None, target=None):
        if name == "rescodec.pillow_plugin":
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, Hook())
from rescodec.cli import run
run()
"""


def test_ctrl_c_while_the_command_loads_is_one_line_and_a_library_import_keeps_the_signals():
    p = subprocess.run([sys.executable, "-c", EARLY_CTRL_C, "/usr/local/bin/rescodec"], capture_output=True,
                       text=True, timeout=120, cwd=REPO, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.returncode == 130 and p.stderr == "rescodec: error: interrupted\n" and p.stdout == ""
    code = "import signal, rescodec; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout == "True\n", p.stderr


def test_compare_and_bench_without_the_bench_extras_say_so_before_the_work(files, tmp_path):
    """They ended in "internal error: ModuleNotFoundError", bench after its whole run."""
    hide = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('skimage', 'matplotlib'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "from rescodec.cli import run\n"
            "sys.argv = ['rescodec'] + sys.argv[1:]\n"
            "run()\n")
    for args, said in ((["compare", files / "rgb.png"], "compare needs the bench extras (skimage)"),
                       (["bench", files, "--out", tmp_path / "b"], "bench needs the bench extras (skimage, matplotlib)")):
        p = subprocess.run([sys.executable, "-c", hide, *map(str, args)], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
        assert p.returncode == 1 and p.stderr == (f"rescodec: error: {said}: pip install 'rescodec[bench]' "
                                                  "(in a checkout: pip install -e '.[bench]')\n"), p.stderr
    assert not (tmp_path / "b").exists()


# 12. batches: where outputs land, and what a batch says

def test_o_dev_stdout_is_written_as_o_dash(files):
    """-o /dev/stdout into a pipe: the file's line went into the data after
    it (an .rsc with 67 bytes after its last section, a PNG after IEND)."""
    if not os.path.exists("/dev/stdout"):
        pytest.skip("no /dev/stdout")
    p = proc("encode", files / "rgb.png", "-s", "4", "-o", "/dev/stdout")   # stdout: a pipe
    assert p.returncode == 0 and p.stdout == codec.encode(files / "rgb.png", scale=4)
    assert b"-> <stdout>" in p.stderr
    p = proc("decode", files / "rgb.rsc", "-o", "/dev/fd/1")
    assert p.returncode == 0 and Image.open(io.BytesIO(p.stdout)).format == "PNG"


def test_workers_keep_a_signal_the_command_was_started_ignoring(monkeypatch):
    """nohup rescodec encode ... -j 2 &: the workers set SIGHUP back to its
    default, and a closed terminal killed every one (each file "not done")."""
    import torch
    threads = torch.get_num_threads()
    old = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *a: None)
        batch_run._init_worker(threads)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        torch.set_num_threads(threads)


def test_o_dev_null_is_a_device_not_stdout_even_where_stdout_is_dev_null(files):
    """stdout on /dev/null is the same file as -o /dev/null: taken for
    stdout, two inputs were refused as "-o - takes exactly one input"."""
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with open(os.devnull, "wb") as null:
        p = subprocess.run([sys.executable, "-m", "rescodec.cli", "decode", files / "rgb.rsc", "-o", "/dev/null"],
                           stdout=null, stderr=subprocess.PIPE, timeout=300, cwd=REPO)
    assert p.returncode == 0 and p.stderr == b""   # its line went to stdout, as for any file


def test_a_file_system_without_hard_links_still_gets_outputs_and_keeps_existing_files(tmp_path, monkeypatch):
    """FAT and exFAT (SD cards, USB sticks) have no hard links: os.link's
    EPERM failed every output without --force."""
    import errno

    def no_links(*args):   # nor modes: vfat refuses a chmod it cannot store
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "fchmod", no_links)
    out = tmp_path / "new" / "a.rsc"
    atomic_write.write_atomic(out, b"first", force=False)
    with pytest.raises(FileExistsError, match="exists"):
        atomic_write.write_atomic(out, b"second", force=False)
    assert out.read_bytes() == b"first" and os.listdir(out.parent) == ["a.rsc"]


def test_outputs_that_differ_in_case_only_or_land_on_a_needed_folder_are_refused(files, monkeypatch):
    """On macOS, Windows and SD cards a.rsc and A.rsc are one file: with
    --force the second replaced the first, and both were said done. Where
    names keep their case (here), both are written."""
    from rescodec import batch_plan
    Image.open(files / "rgb.png").save(files / "RGB.jpg")
    assert not batch_plan.ignores_case(files)
    res = rsc("encode", files / "rgb.png", files / "RGB.jpg", "-s", "4", "-o", files / "both")
    assert res.exit_code == 0 and sorted(os.listdir(files / "both")) == ["RGB.rsc", "rgb.rsc"]
    monkeypatch.setattr(batch_plan, "ignores_case", lambda folder: True)   # as on an SD card
    res = rsc("encode", files / "rgb.png", files / "RGB.jpg", "-s", "4", "--force")
    assert res.exit_code == 2 and "one file where names ignore case" in res.stderr
    assert not (files / "RGB.rsc").exists()
    monkeypatch.undo()
    e = files / "e"
    (e / "a.rsc").mkdir(parents=True)
    Image.open(files / "rgb.png").save(e / "a.rsc" / "b.png")
    Image.open(files / "rgb.png").save(e / "a.tif")
    res = rsc("encode", e, "-o", files / "eo", "-s", "4")
    assert res.exit_code == 2 and "a folder" in res.stderr and not (files / "eo").exists()


def test_rsc_inputs_that_would_be_their_own_outputs_are_left_out_of_a_batch(files, tmp_path):
    """`rescodec encode *` run again: the earlier .rsc outputs refused the
    whole command ("would be overwritten by its own output"). With -o
    elsewhere an .rsc input is still decoded and coded again."""
    again = tmp_path / "again"
    again.mkdir()
    for n in ("rgb.png", "rgba.rsc"):
        (again / n).write_bytes((files / n).read_bytes())
    res = rsc("encode", again / "rgb.png", again / "rgba.rsc", "-s", "4")
    assert res.exit_code == 0 and "1 .rsc input left out: each would be overwritten" in res.stderr
    assert sorted(os.listdir(again)) == ["rgb.png", "rgb.rsc", "rgba.rsc"]
    assert (again / "rgba.rsc").read_bytes() == (files / "rgba.rsc").read_bytes()
    res = rsc("encode", again / "rgba.rsc", "-s", "4", "-o", tmp_path / "out" / "x.rsc")
    assert res.exit_code == 0 and (tmp_path / "out" / "x.rsc").exists()


def test_a_folder_of_symlinked_folders_says_so(files):
    real = files / "real"
    real.mkdir()
    Image.open(files / "rgb.png").save(real / "x.png")
    only = files / "only"
    only.mkdir()
    os.symlink(real, only / "link")
    res = rsc("encode", only)
    assert res.exit_code == 1 and "1 symlinked folder not followed" in res.stderr


def test_a_batch_whose_stdout_fails_still_codes_every_file(files):
    """> /dev/full: the first line's error ended the batch, and b was never coded."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = files / "out"
    with open("/dev/full", "wb") as full:
        p = subprocess.run([sys.executable, "-m", "rescodec.cli", "encode", files / "rgb.png", files / "rgba.png",
                            "-s", "4", "-o", out], stdout=full, stderr=subprocess.PIPE, timeout=300, cwd=REPO)
    assert p.returncode == 1 and sorted(os.listdir(out)) == ["rgb.rsc", "rgba.rsc"]
    assert p.stderr.decode().count("rescodec: error:") == 1 and b"<stdout>" in p.stderr


def test_a_name_with_a_newline_or_an_escape_is_one_line(files):
    """A file named with a newline printed its line in two; with ESC, what
    followed could drive the terminal. --json keeps the name as it is."""
    odd = files / "two\nlines\x1b[2J.png"
    odd.write_bytes((files / "rgb.png").read_bytes())
    res = rsc("encode", odd, "-s", "4", "-o", files / "out.rsc")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 1, res.stdout
    assert "two\\nlines\\x1b[2J.png -> " in res.stdout
    res = rsc("encode", odd, "-s", "4", "-o", files / "out2.rsc", "--json")
    assert json.loads(res.stdout)[0]["input"] == str(odd)


def test_device_cuda_without_cuda_is_refused_before_any_file(files, monkeypatch):
    """It failed per file, after each file's model was loaded; where no
    descent runs (--refine on an AVIF small picture) it changes nothing, and
    says so."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = rsc("encode", files / "rgb.png", files / "rgba.png", "-s", "2", "--refine-iters", "2",
              "--device", "cuda", "-o", files / "out")
    assert res.exit_code == 2 and "torch sees no CUDA device" in res.stderr and not (files / "out").exists()
    res = rsc("encode", files / "rgb.png", "-s", "2", "--refine", "--device", "cuda", "-o", files / "r.rsc")
    assert res.exit_code == 0 and "--device changes nothing" in res.stderr


def test_the_command_line_starts_where_the_platform_has_no_sighup(monkeypatch, capsys):
    """Windows has no SIGHUP: naming it failed every command at its start."""
    import importlib
    from rescodec import stop_signals
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.delattr(signal, "SIGHUP")
    importlib.reload(stop_signals)
    monkeypatch.setattr(sys, "argv", ["rescodec", "--version"])
    try:
        assert stop_signals.HANGUP is None and stop_signals.STOP == (signal.SIGINT, signal.SIGTERM)
        cli.run()   # --version: it returns
        assert rescodec.__version__ in capsys.readouterr().out
    finally:
        monkeypatch.undo()
        importlib.reload(stop_signals)
        for s, h in saved.items():
            signal.signal(s, h)


def test_json_objects_have_the_keys_the_readme_lists(files):
    """README, "--json": the keys of each command's objects, as scripts read them."""
    enc = json.loads(rsc("encode", files / "rgb.png", "-o", files / "j.rsc", "--json", "--print-psnr").stdout)[0]
    assert set(enc) == {"input", "output", "bytes", "bpp", "scale", "model", "seconds", "sections", "psnr"}
    dec = json.loads(rsc("decode", files / "j.rsc", "-o", files / "j.png", "--json").stdout)[0]
    assert set(dec) == {"input", "output", "width", "height", "mode", "seconds", "model", "sections",
                        "z_temperature", "z_seed"}
    th = json.loads(rsc("thumb", files / "j.rsc", "-o", files / "t.png", "--json").stdout)[0]
    assert set(th) == {"input", "output", "width", "height"}
    info = json.loads(rsc("info", files / "j.rsc", "--json").stdout)
    assert info["file"] == str(files / "j.rsc") and set(info["sections"]["LR"]) == {"bytes", "share"}

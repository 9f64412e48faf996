"""The CLI: one line per file, one line per error, non-zero exits, no tracebacks."""
import json
import shutil
import tempfile
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import gradient_image


def run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "rescodec", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(40, 56), (33, 17)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(gradient_image(h, w, seed=i)).save(p)
        paths.append(p)
    return paths


def test_no_command_prints_the_help():
    p = run()
    assert p.returncode == 2 and not p.stdout
    assert p.stderr.startswith("Usage: ") and "\nCommands:\n" in p.stderr and "  encode " in p.stderr


def test_a_damaged_image_is_one_line_and_exit_1(tmp_path):
    import io
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "TIFF")
    bad = bytearray(buf.getvalue())
    bad[8] = 0xFF   # the first tag's count: Pillow then raises TypeError
    (tmp_path / "bad.tif").write_bytes(bad)
    p = run("encode", tmp_path / "bad.tif")
    assert p.returncode == 1 and p.stderr.startswith("rescodec: error: ") and "unreadable image" in p.stderr
    assert len(p.stderr.splitlines()) == 1 and not (tmp_path / "bad.rsc").exists()


def test_encode_takes_max_pixels(pngs, tmp_path):
    p = run("encode", pngs[0], "--max-pixels", "2000", "-o", tmp_path / "a.rsc")
    assert p.returncode == 1 and p.stderr == (f"rescodec: error: {pngs[0]}: 56x40 is over the limit of 2000 "
                                              "pixels (raise it with --max-pixels, or max_pixels=)\n")
    assert run("encode", pngs[0], "--max-pixels", "2240", "-o", tmp_path / "a.rsc").returncode == 0


def test_encode_decode_info(pngs, tmp_path):
    p = run("encode", pngs[0], "-s", "4")
    assert p.returncode == 0, p.stderr
    rsc = tmp_path / "img0.rsc"
    assert rsc.exists() and "bpp" in p.stdout and "x4" in p.stdout
    p = run("decode", rsc)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "img0.decoded.png"
    assert Image.open(out).size == (56, 40)
    assert Image.open(pngs[0]).size == (56, 40)          # the original is untouched
    p = run("info", rsc, "--json")
    d = json.loads(p.stdout)
    assert d["scale"] == 4 and d["width"] == 56 and d["bytes"] == rsc.stat().st_size


def test_never_overwrites_without_force(pngs, tmp_path):
    assert run("encode", pngs[0], "-s", "8").returncode == 0
    rsc = tmp_path / "img0.rsc"
    before = rsc.read_bytes()
    p = run("encode", pngs[0], "-s", "4")
    assert p.returncode != 0 and "--force" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert rsc.read_bytes() == before
    assert run("encode", pngs[0], "-s", "4", "--force").returncode == 0
    assert rsc.read_bytes() != before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_several_inputs_to_a_folder(pngs, tmp_path):
    out = tmp_path / "out"
    p = run("encode", *pngs, "-s", "2", "-o", f"{out}/")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(out)) == ["img0.rsc", "img1.rsc"]
    assert len(p.stdout.strip().splitlines()) == 3           # one per file + summary
    p = run("decode", out / "img0.rsc", out / "img1.rsc", "-o", tmp_path / "dec")
    assert p.returncode == 0 and len(os.listdir(tmp_path / "dec")) == 2


@pytest.mark.parametrize("flags", [["--refine"], ["--refine-iters", "2", "--refine-method", "hcd"]],
                         ids=["default", "hcd"])
def test_refine_flags(pngs, tmp_path, flags):
    # the flags stand before the file name: --refine takes no value to swallow it
    p = run("encode", *flags, pngs[0], "-s", "4")
    assert p.returncode == 0, p.stderr
    assert "refined" in p.stderr                 # the notice: AVIF speed 0, or PSNR before -> after
    assert run("decode", tmp_path / "img0.rsc").returncode == 0


def test_lr_step_flag(pngs, tmp_path):
    assert run("encode", pngs[0], "-s", "4", "--lr-step", "2").returncode == 0
    p = run("info", tmp_path / "img0.rsc", "--json")
    assert json.loads(p.stdout)["lr_step"] == 2
    p = run("encode", pngs[0], "-s", "4", "--lr-step", "17", "--force")
    assert p.returncode == 2 and "from 1 to 16" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_speed_flag(pngs, tmp_path):
    """--speed is taken (test_lossy_lr.py checks what it changes); out of range
    or on a lossless thumbnail it is a one-line usage error that writes nothing."""
    p = run("encode", pngs[0], "-o", tmp_path / "b.rsc", "--speed", "8", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)[0]["output"].endswith("b.rsc")
    for args, msg in ((["--speed", "11"], "from 0 to 10"), (["--speed", "4", "--lr-codec", "lossless"],
                                                            "for an AVIF LR")):
        p = run("encode", pngs[0], "-o", tmp_path / "c.rsc", *args)
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "c.rsc").exists()


def test_unknown_refine_method_lists_choices(pngs):
    p = run("encode", pngs[0], "-s", "4", "--refine", "--refine-method", "sgd")
    assert p.returncode == 2 and "rd" in p.stderr and "hcd" in p.stderr


def test_bad_scale_lists_choices(pngs):
    p = run("encode", pngs[0], "-s", "3")
    assert p.returncode == 2 and "1, 2, 4, 8, 16" in p.stderr.replace("'", "")


def test_one_bad_file_among_good_ones(pngs, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    p = run("encode", pngs[0], bad, empty, "-s", "4", "-o", tmp_path / "o")
    assert p.returncode == 1
    errs = [l for l in p.stderr.splitlines() if "error" in l]
    assert len(errs) == 2 and "notes.txt" in errs[0] and "empty" in errs[1]
    assert (tmp_path / "o" / "img0.rsc").exists()


@pytest.mark.parametrize("content,msg", [(b"", "truncated"), (b"RSC\x1a\x0a", "version"),
                                         (b"PK\x03\x04 zip", "not an .rsc")])
def test_bad_rsc_files(tmp_path, content, msg):
    f = tmp_path / "bad.rsc"
    f.write_bytes(content)
    for cmd in ("decode", "info"):
        p = run(cmd, f)
        assert p.returncode == 1 and msg in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.decoded.png").exists()


def test_corrupted_rsc(pngs, tmp_path):
    run("encode", pngs[0], "-s", "4")
    rsc = tmp_path / "img0.rsc"
    data = bytearray(rsc.read_bytes())
    data[-20] ^= 0x55                  # inside the LR section
    rsc.write_bytes(bytes(data))
    p = run("decode", rsc)
    assert p.returncode == 1 and "CRC" in p.stderr


def test_missing_input(tmp_path):
    p = run("encode", tmp_path / "nope.png")
    assert p.returncode == 1 and "no such file" in p.stderr


@pytest.mark.parametrize("command", ["decode", "info", "thumb"])
def test_missing_rsc_is_one_plain_line(tmp_path, command):
    p = run(command, tmp_path / "nope.rsc")
    assert p.returncode == 1
    assert p.stderr == f"rescodec: error: {tmp_path / 'nope.rsc'}: no such file or directory\n"


def test_folder_tree_with_workers(tmp_path):
    tree = tmp_path / "shots"
    (tree / "day2").mkdir(parents=True)
    Image.fromarray(gradient_image(32, 48)).save(tree / "a.png")
    Image.fromarray(gradient_image(40, 24, seed=3)).save(tree / "day2" / "b.jpg")
    (tree / "day2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    (tree / "notes.txt").write_text("ignored: not an image suffix")
    p = run("encode", tree, "-s", "8", "-o", tmp_path / "out", "-j", "2")
    assert p.returncode == 1                                  # one file failed
    assert "2 of 3 files done, 1 failed" in p.stderr and "broken.png" in p.stderr
    # a folder's contents are mirrored under -o, subfolders kept, no extra level
    assert (tmp_path / "out" / "a.rsc").exists()
    assert (tmp_path / "out" / "day2" / "b.rsc").exists()
    p = run("decode", tmp_path / "out", "-o", tmp_path / "dec", "-j", "2")
    assert p.returncode == 0, p.stderr
    assert sorted(str(f.relative_to(tmp_path / "dec")) for f in (tmp_path / "dec").rglob("*.png")) \
        == ["a.decoded.png", os.path.join("day2", "b.decoded.png")]
    assert Image.open(tmp_path / "dec" / "day2" / "b.decoded.png").size == (24, 40)


def test_ctrl_c_leaves_no_partial_outputs(tmp_path):
    import signal
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        Image.fromarray(gradient_image(400, 600, seed=i)).save(src / f"p{i:02d}.png")
    # Ctrl-C as at a terminal: a runner started in the background (nohup, `&`)
    # passes SIGINT down ignored, and Python then never raises KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "rescodec", "encode", str(src), "-s", "2",
                          "-o", str(tmp_path / "out")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "->" in p.stdout.readline()      # the first file is done: interrupt the batch
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err
    assert p.returncode == 130 and "interrupted" in err, (p.returncode, err)   # stopped mid-batch
    written = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert not [f for f in written if f.name.endswith(".tmp")]
    done = 1 + out.count(" -> ")      # the summary says what was done: each file with its line
    assert f"{done} of 12 files done, 0 failed, {12 - done} not done; outputs in {tmp_path / 'out'}\n" in err
    assert len([f for f in written if f.is_file()]) == done
    for f in written:
        if f.is_file():               # every output present is a complete, valid file
            import rescodec
            assert rescodec.info(f.read_bytes())["width"] == 600


def test_a_stream_named_without_o_is_a_usage_error(pngs, tmp_path):
    """/dev/stdin (even from a file) and <(cmd) are read like -: an output
    beside them went into /dev, or to /dev/fd/63.rsc."""
    with open(pngs[0], "rb") as f:
        p = subprocess.run([sys.executable, "-m", "rescodec", "encode", "/dev/stdin", "-q", "20"], stdin=f,
                           capture_output=True, text=True)
    assert p.returncode == 2 and "/dev/stdin names a stream" in p.stderr and "needs -o" in p.stderr
    assert not os.path.exists("/dev/stdin.rsc")
    with open(pngs[0], "rb") as f:
        p = subprocess.run([sys.executable, "-m", "rescodec", "encode", "/dev/stdin", "-q", "20", "-o",
                            str(tmp_path / "a.rsc")], stdin=f, capture_output=True, text=True)
    assert p.returncode == 0 and (tmp_path / "a.rsc").exists()
    p = run("decode", "/proc/self/fd/0")
    assert p.returncode == 2 and "/proc/self/fd/0 names a stream" in p.stderr
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):   # a file below /dev is a file
        src = Path(tempfile.mkdtemp(dir="/dev/shm")) / "a.png"
        try:
            src.write_bytes(pngs[0].read_bytes())
            assert run("encode", src, "-q", "20").returncode == 0 and src.with_suffix(".rsc").is_file()
        finally:
            shutil.rmtree(src.parent)


def test_a_model_not_installed_is_a_usage_error(pngs, tmp_path):
    """It was exit 1, with a sentence about rescodec 0.1's files."""
    p = run("encode", pngs[0], "--model", "nope", "-o", tmp_path / "a.rsc")
    assert p.returncode == 2 and p.stderr == ("rescodec: error: --model 'nope' is not installed; "
                                              "`rescodec models` lists those that are\n")
    assert not (tmp_path / "a.rsc").exists()


def test_a_folder_in_the_outputs_place_is_not_offered_to_force(pngs, tmp_path):
    """It said "exists (use --force to overwrite)", and --force then failed."""
    src = tmp_path / "a.png"
    src.write_bytes(pngs[0].read_bytes())
    (tmp_path / "a.rsc").mkdir()
    p = run("encode", src)
    assert p.returncode == 1 and p.stderr == f"rescodec: error: {tmp_path / 'a.rsc'}: a folder is there; " \
                                             "--force replaces only files\n"
    assert (tmp_path / "a.rsc").is_dir()

"""The built wheel carries the models: installed into a fresh virtualenv, it
round-trips a photo from a folder outside the checkout."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_in_a_fresh_virtualenv_round_trips_a_photo(tmp_path):
    dist, env, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("rescodec-*.whl"))
    # the dependencies (torch, ...) come from this interpreter's site-packages;
    # rescodec itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True)
    py, cli = env / "bin" / "python", env / "bin" / "rescodec"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    Image.fromarray(skimage.data.coffee()[::4, ::4]).save(work / "photo.png")
    clean = {k: v for k, v in os.environ.items() if k not in ("RESCODEC_WEIGHTS", "PYTHONPATH")}
    where = subprocess.run([str(py), "-c", "import rescodec; print(rescodec.__file__)"], cwd=work,
                           env=clean, capture_output=True, text=True, check=True).stdout
    assert str(env) in where and str(ROOT) not in where
    subprocess.run([str(cli), "encode", "photo.png", "-o", "photo.rsc"], cwd=work, env=clean, check=True,
                   capture_output=True)
    subprocess.run([str(cli), "decode", "photo.rsc", "-o", "back.png"], cwd=work, env=clean, check=True,
                   capture_output=True)
    back = np.asarray(Image.open(work / "back.png"))
    assert back.shape == (100, 150, 3)

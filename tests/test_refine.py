"""HCD refinement: never worse than the plain encode, decodes with the plain decoder."""
import numpy as np
import pytest

import rescodec
from rescodec import codec, refine
from rescodec.metrics import psnr
from rescodec.refine import pick_device


@pytest.mark.parametrize("scale", [2, 16])
def test_refine_never_lowers_psnr(photo, scale):
    img = photo[:64, :96]
    plain = np.asarray(rescodec.decode(rescodec.encode(img, scale=scale)))
    enc = codec.encode_ex(img, scale, refine=3, device="cpu")
    refined = np.asarray(rescodec.decode(enc.data))      # the unchanged decoder
    assert refined.shape == img.shape
    assert psnr(img, refined) >= psnr(img, plain) - 1e-9
    assert any(n.startswith("refined") for n in enc.notices)


def test_refine_with_temperature_uses_the_stored_z(photo):
    img = photo[:48, :48]
    data = rescodec.encode(img, scale=4, temperature=0.5, seed=9, refine=2, device="cpu")
    a, b = (np.asarray(rescodec.decode(data)) for _ in range(2))
    assert np.array_equal(a, b)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        pick_device("tpu")


def test_refine_in_tiles_gains_like_the_whole_image(photo, monkeypatch):
    """Above refine.WHOLE_MAX_PIXELS HCD runs tile by tile (bounded memory);
    shrink the limits so a small photo takes that path."""
    img, s = photo[:96, :128], 2
    plain = psnr(img, np.asarray(rescodec.decode(rescodec.encode(img, scale=s))))
    whole = psnr(img, np.asarray(rescodec.decode(rescodec.encode(img, scale=s, refine=3, device="cpu"))))
    monkeypatch.setattr(refine, "WHOLE_MAX_PIXELS", 80 * 80)
    monkeypatch.setattr(refine, "TILE_EXT_HR", 80)     # 48-pixel cores, 2 x 3 tiles
    enc = codec.encode_ex(img, s, refine=3, device="cpu")
    assert any(n.startswith("refined in tiles") for n in enc.notices)
    tiled = psnr(img, np.asarray(rescodec.decode(enc.data)))
    assert whole > plain + 0.05
    assert tiled > plain + 0.5 * (whole - plain)

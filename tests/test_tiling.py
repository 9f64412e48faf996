"""Tiled processing of large images: same format, seams below 0.05 dB."""
import numpy as np
import pytest

import rescodec
from rescodec import tiling
from rescodec.mask import MaskParams, lr_mask
from rescodec.evaluation.metrics import psnr


@pytest.fixture
def tiny_tiles(monkeypatch):
    monkeypatch.setattr(tiling, "WHOLE_MAX_PIXELS", 1)     # tile everything
    monkeypatch.setattr(tiling, "TILE_HR", 128)


def test_boxes_cover_exactly_once():
    cover = np.zeros(100, int)
    for a, b, c, d in tiling.boxes(100, 16, 5):
        assert c <= a < b <= d and c >= 0 and d <= 100
        cover[a:b] += 1
    assert (cover == 1).all()


@pytest.mark.parametrize("s", [1, 2])
def test_tile_cores_pasted_from_their_windows_rebuild_the_image(s):
    """Each tile's core, cut from what its window gives (here: the window
    itself, s pixels per grid pixel), lands where it belongs, exactly once."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37 * s, 50 * s, 3), dtype=np.uint8)
    out = np.zeros_like(img)
    cover = np.zeros((37, 50), int)
    parts = tiling.tiles(37, 50, 16, 5)
    for t in parts:
        out[t.core(s)] += img[t.window(s)][t.core_in_window(s)]
        cover[t.core()] += 1
    assert (out == img).all() and (cover == 1).all()
    assert sum(t.core_pixels for t in parts) == 37 * 50


@pytest.mark.parametrize("scale", [2, 4, 16])
def test_tiled_matches_whole(photo, scale, monkeypatch):
    whole = rescodec.encode(photo, scale=scale)
    ref = psnr(photo, np.asarray(rescodec.decode(whole)))
    monkeypatch.setattr(tiling, "WHOLE_MAX_PIXELS", 1)
    monkeypatch.setattr(tiling, "TILE_HR", 128)
    # the same file decoded in tiles: the format does not depend on tiling
    assert abs(psnr(photo, np.asarray(rescodec.decode(whole))) - ref) < 0.05
    # encoded and decoded in tiles
    tiled = rescodec.encode(photo, scale=scale)
    assert len(tiled) == pytest.approx(len(whole), rel=0.01)
    assert abs(psnr(photo, np.asarray(rescodec.decode(tiled))) - ref) < 0.05


def test_tiled_mask_is_exact(photo, tiny_tiles):
    for s in (2, 8):
        h, w = photo.shape[0] // s * s, photo.shape[1] // s * s
        img = photo[:h, :w]
        assert np.array_equal(tiling.mask_levels(img, s, MaskParams()), lr_mask(img, s, MaskParams()))


def test_reporting_counts_each_stages_tiles_in_order(photo, tiny_tiles, monkeypatch):
    """The progress of a large photo: every tiled stage reports 1..n of its n
    tiles, in order and in the calling thread; the pixels do not change."""
    import threading
    monkeypatch.setattr(tiling, "DECODE_CORE_LR", 32)
    monkeypatch.setattr(tiling, "HEAD_CORE_LR", 48)
    data = rescodec.encode(photo, quality=20)   # x2, with a restoration head
    calls, caller = [], threading.get_ident()

    def report(stage, done, total):
        assert threading.get_ident() == caller
        calls.append((stage, done, total))
    with tiling.reporting(report):
        with_report = np.asarray(rescodec.decode(data))
    assert np.array_equal(with_report, np.asarray(rescodec.decode(data)))
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["inverse flow, pass 1 of 2", "inverse flow, pass 2 of 2", "restoration"]
    for stage in stages:
        done = [(d, n) for s, d, n in calls if s == stage]
        assert [d for d, _ in done] == list(range(1, done[0][1] + 1)) and done[0][1] > 1
    with tiling.reporting(lambda *a: calls.append(a)):
        pass
    n = len(calls)
    rescodec.encode(photo, quality=20)   # outside: nothing reported
    assert len(calls) == n and tiling._REPORT.get() is None

"""compare/bench: the matched-size search, BD metrics, compare --json."""
import csv

import numpy as np
import pytest
from PIL import Image

from rescodec.evaluation import baselines
from rescodec.evaluation.compare import bench
from rescodec.evaluation.metrics import bd_psnr, bd_rate

from conftest import gradient_image


def test_search_returns_largest_quality_within_target():
    sizes = {q: 100 + 10 * q for q in range(1, 101)}
    q, n = baselines.largest_quality_within(sizes.__getitem__, 555)
    assert (q, n) == (45, 550)
    assert baselines.largest_quality_within(sizes.__getitem__, 10 ** 6) == (100, 1100)
    assert baselines.largest_quality_within(sizes.__getitem__, 50) == (None, 110)


@pytest.mark.parametrize("codec", baselines.CODECS)
def test_matched_is_no_larger_and_next_quality_is(photo, codec):
    target = len(baselines.encode_at(photo, codec, 50)) + 50
    c = baselines.matched(photo, codec, target)
    q = int(c.setting[2:])
    assert c.nbytes <= target
    if q < 100:
        assert len(baselines.encode_at(photo, codec, q + 1)) > target


def test_matched_cannot_go_that_small(photo):
    c = baselines.matched(photo, "JPEG", 10)
    assert c.setting == "q=1" and "cannot go that small" in c.note


def test_webps_lowest_quality_is_0():
    """Pillow's WebP takes quality 0, a smaller file than 1: compare showed WebP
    a 37 % larger file ahead, saying it could not go that small."""
    rgb = gradient_image(96, 128, seed=3)
    at0 = len(baselines.encode_at(rgb, "WEBP", 0))
    assert at0 < len(baselines.encode_at(rgb, "WEBP", 1))
    c = baselines.matched(rgb, "WEBP", at0)
    assert c.setting == "q=0" and c.nbytes == at0 and not c.note


def test_a_grey_photo_is_a_grey_jpeg():
    """A user saving a grey photo as JPEG gets one channel; as three it was a
    larger file at the same quality, 0.7 dB worse at the same size."""
    import io
    grey = np.repeat(gradient_image(64, 64, seed=2)[..., :1], 3, axis=2)
    data = baselines.encode_at(grey, "JPEG", 50)
    assert Image.open(io.BytesIO(data)).mode == "L"
    as_colour = io.BytesIO()
    Image.fromarray(grey).save(as_colour, "JPEG", quality=50, optimize=True)
    assert len(data) < len(as_colour.getvalue())
    assert baselines.decode_bytes(data).shape == grey.shape
    assert Image.open(io.BytesIO(baselines.encode_at(gradient_image(64, 64), "JPEG", 50))).mode == "RGB"


def test_equal_rates_keep_the_better_point_and_a_curve_reaches_its_largest_file():
    """Two files of one size (AVIF q20 and q30 of a flat picture): the worse
    one stayed on the envelope and the BD fit failed on a repeated x; and a
    size past the envelope's last point but within the largest file was
    "not reached", though the best file within it is known."""
    from rescodec.evaluation.metrics import _envelope
    from rescodec.evaluation.rd import psnr_at
    r, p = _envelope(np.array([0.1, 0.1, 0.2, 0.4]), np.array([28.0, 29.0, 31.0, 34.0]))
    assert list(r) == [0.1, 0.2, 0.4] and list(p) == [29.0, 31.0, 34.0]
    assert np.isfinite(bd_rate(r, p, np.array([0.1, 0.1, 0.2, 0.4]), np.array([28.0, 29.0, 31.0, 34.0])))
    pts = [{"bpp": b, "psnr": q} for b, q in ((0.1, 30.0), (0.14, 32.0), (0.16, 31.5), (0.17, 31.8))]
    assert psnr_at(pts, 0.15) == 32.0 and psnr_at(pts, 0.17) == 32.0
    assert np.isnan(psnr_at(pts, 0.18)) and np.isnan(psnr_at(pts, 0.09))


def test_bd_textbook_cases():
    """Half the rate at every PSNR is BD-rate -50%; +1 dB everywhere is BD-PSNR +1."""
    r = np.array([0.25, 0.5, 1.0, 2.0])
    p = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(r, p, r / 2, p) == pytest.approx(-50.0)
    assert bd_psnr(r, p, r, p + 1) == pytest.approx(1.0)
    assert bd_rate(r, p, r, p) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(bd_rate(r, p, r * 100, p + 50))      # no overlap


def test_bd_curve_that_dips():
    """A dominated point (higher rate, lower PSNR: the val set's baboon at x4
    against x8) is ignored instead of blowing the fit up to 1e43 %."""
    jr = np.array([0.1, 0.2, 0.5, 1.0, 2.0, 4.0])
    jp = np.array([17.0, 18.5, 20.5, 22.5, 25.0, 28.0])
    r = np.array([0.0733, 0.1567, 0.7553, 4.5856])      # bpp and PSNR measured on baboon
    p = np.array([18.648, 19.196, 18.510, 25.291])
    keep = [0, 1, 3]
    assert bd_rate(jr, jp, r, p) == pytest.approx(bd_rate(jr, jp, r[keep], p[keep]))
    assert -100 < bd_rate(jr, jp, r, p) < 1000
    assert bd_psnr(jr, jp, r, p) == pytest.approx(bd_psnr(jr, jp, r[keep], p[keep]))
    # the shifted-curve identities hold for the piecewise fit too
    assert bd_rate(jr, jp, jr * 1.5, jp) == pytest.approx(50.0)


def test_compare_rows_are_matched_to_rescodecs_size(tmp_path):
    from rescodec.evaluation.compare import BASELINES, compare
    from rescodec.settings import EncodeSettings
    img = gradient_image(64, 96)
    rows = compare(img, [EncodeSettings(quality=30)], save=tmp_path / "strips", name="g")
    assert [r["codec"] for r in rows] == ["rescodec", *BASELINES]
    ours = rows[0]
    assert ours["size_ratio"] == 1.0 and ours["dpsnr"] == 0.0
    for r in rows[1:]:
        assert r["bytes"] <= ours["bytes"] or "cannot go that small" in r["note"]
    assert (tmp_path / "strips" / "g_q30.png").exists()
    big = gradient_image(128, 192)   # where the baselines' files bracket rescodec's
    rows = compare(big, [EncodeSettings(quality=90)])
    for r in rows[1:]:   # dPSNR at rescodec's size: no lower than that of the codec's smaller file
        assert not np.isfinite(r["dpsnr"]) or r["dpsnr"] + rows[0]["psnr"] >= r["psnr"] - 1e-9, r
    assert sum(np.isfinite(r["dpsnr"]) for r in rows[1:]) >= 3
    halves = np.zeros((32, 48, 3), np.uint8)   # decodes exactly: 100 dB, not inf - inf
    halves[:, 24:] = 255
    rows = compare(halves, [EncodeSettings(quality=90)])
    exact = [r for r in rows[1:] if r["psnr"] == np.inf and not r["note"]]
    assert rows[0]["dpsnr"] == 0.0 and exact and all(r["dpsnr"] == 0.0 for r in exact)
    # the default x2 model samples Z: a temperature strip; a model trained at Z = 0 has none
    assert (tmp_path / "strips" / "g_q30_temperature.png").exists()
    compare(img, [EncodeSettings(quality=30, model="rescodec-x2-avif-v6")], save=tmp_path / "z0", name="g")
    assert (tmp_path / "z0" / "g_q30_rescodec-x2-avif-v6.png").exists()   # named by the model asked for
    assert not (tmp_path / "z0" / "g_q30_rescodec-x2-avif-v6_temperature.png").exists()


def test_compare_draws_a_texture_models_temperatures(tmp_path):
    from rescodec.evaluation.compare import compare
    from rescodec.settings import EncodeSettings
    img = gradient_image(64, 96)
    compare(img, [EncodeSettings(quality=30, model="rescodec-x4-avif-v2")], save=tmp_path, name="g")
    # original, t = 0, the file's t (0.75), t = 1: the crop (all of 64x96)
    # twice enlarged, under labels; t = 1 draws texture that t = 0 has not
    strip = np.asarray(Image.open(tmp_path / "g_q30_rescodec-x4-avif-v2_temperature.png"))
    assert strip.shape[:2] == (2 * 64 + 18, 4 * 2 * 96)
    tile = lambda k: strip[18:, k * 192:(k + 1) * 192]
    assert not np.array_equal(tile(1), tile(3))


def test_bench_survives_a_bad_file(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(gradient_image(48, 64)).save(d / "a.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    s = bench(sorted(d.iterdir()), tmp_path / "out", qualities=(20, 80), progress=False)
    assert s["failed"] == [str(d / "broken.png")]
    assert s["images"] == 1 and "rescodec" in s["grid"]
    for f in ("points.csv", "summary.md", "rd.png"):
        assert (tmp_path / "out" / f).exists()
    rows = list(csv.DictReader(open(tmp_path / "out" / "points.csv")))
    ours = sorted((float(r["bpp"]), float(r["psnr"])) for r in rows if r["codec"] == "rescodec")
    assert len(ours) == 2 and ours[0][1] < ours[1][1]      # -q 80 is bigger and better than -q 20


def test_avif_tuned_for_psnr_is_a_baseline_of_its_own(photo):
    """rescodec's LR is AVIF with tune=psnr, so bench shows full-size AVIF
    with that tuning too: on the same photo, at the same quality, it is not
    the default AVIF (other bytes or other pixels)."""
    from rescodec.evaluation import rd
    pts = rd.baseline_points(photo[:64, :96])
    codecs = {p["codec"] for p in pts}
    assert {"AVIF-psnr", "lanczos2+AVIF-psnr", "lanczos4+AVIF-psnr"} <= codecs
    at = {(p["codec"], p["setting"]): (p["bpp"], p["psnr"]) for p in pts}
    assert at[("AVIF-psnr", 50)] != at[("AVIF", 50)]
    # a "rescodec" that is lanczos2+AVIF-psnr: its margin against the better tuned pipeline is <= 0
    summary = rd.summarise({"photo": pts + [{"codec": "rescodec", "setting": q, "bpp": b, "psnr": v}
                                            for (c, q), (b, v) in at.items() if c == "lanczos2+AVIF-psnr"]})
    margins = [m for m, n in summary["margins"]["best lanczos+AVIF-psnr"].values() if n]
    assert margins and max(margins) <= 1e-9


def test_lanczos_avif_baseline_matches_size(photo):
    c = baselines.matched(photo, "lanczos2+AVIF", 1500)
    assert c.nbytes <= 1500 and c.decoded.shape == photo.shape


def test_compare_says_an_alpha_channel_is_left_out():
    from rescodec.evaluation.compare import compare
    from rescodec.settings import EncodeSettings
    img = gradient_image(32, 48)
    rgba = np.dstack([img, np.full(img.shape[:2], 128, np.uint8)])
    for a, said in ((img, []), (rgba, ["the alpha channel is left out: every codec here codes the colour alone"])):
        notices = []
        compare(a, [EncodeSettings(quality=10)], notices=notices)
        assert notices == said


def test_compare_and_bench_replace_files_only_with_force(tmp_path, monkeypatch):
    from rescodec.evaluation.compare import compare
    from rescodec.settings import EncodeSettings
    import subprocess
    import sys
    img = tmp_path / "in" / "g.png"
    img.parent.mkdir()
    Image.fromarray(gradient_image(32, 48)).save(img)
    strips = tmp_path / "strips"
    strips.mkdir()
    (strips / "g_q20.png").write_text("a strip of my own")
    from rescodec.evaluation import compare as module
    with monkeypatch.context() as m, pytest.raises(FileExistsError, match="g_q20.png exists"):
        m.setattr(module, "_rescodec", lambda *a: pytest.fail("encoded before the check"))
        compare(img, [EncodeSettings(quality=20)], save=strips, name="g")
    assert (strips / "g_q20.png").read_text() == "a strip of my own"
    compare(img, [EncodeSettings(quality=20)], save=strips, name="g", force=True)
    assert Image.open(strips / "g_q20.png").format == "PNG"
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("notes of my own")
    p = subprocess.run([sys.executable, "-m", "rescodec", "bench", str(img.parent), "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr == f"rescodec: error: {out / 'summary.md'} exists (use --force to overwrite)\n"
    assert (out / "summary.md").read_text() == "notes of my own"


def test_compare_takes_a_setting_once_and_refuses_two_of_one_name(tmp_path):
    from rescodec.evaluation.compare import compare
    from rescodec.settings import EncodeSettings
    img = gradient_image(32, 48)
    rows = compare(img, [EncodeSettings(quality=20)] * 2, save=tmp_path, name="g")
    assert [r["codec"] for r in rows].count("rescodec") == 1
    with pytest.raises(ValueError, match="would write the same strip"):
        compare(img, [EncodeSettings(quality=20), EncodeSettings(quality=20, temperature=0.5)],
                save=tmp_path / "b", name="g")
    compare(img, [EncodeSettings(quality=20), EncodeSettings(quality=20, scale=4)], save=tmp_path / "c", name="g")
    assert sorted(p.name for p in (tmp_path / "c").glob("g_q20*.png") if "temperature" not in p.name) == [
        "g_q20.png", "g_q20_x4.png"]   # -s 4 asked for: a strip of its own


def test_a_baseline_that_cannot_code_the_photo_is_left_out_with_a_note(monkeypatch):
    """JPEG codes at most 65500 pixels a side, WebP 16383, and libavif decodes
    at most 32768: compare and bench stopped at the first baseline that could not."""
    from rescodec.evaluation import compare, rd
    assert baselines.cannot_code("JPEG", (2, 65501)) and not baselines.cannot_code("JPEG", (2, 65500))
    img = gradient_image(24, 200)
    monkeypatch.setitem(baselines.lossless.SIDE_LIMITS, "WEBP", ("WebP", 100))
    assert baselines.cannot_code("WEBP", img.shape) == "WebP codes at most 100 pixels a side"
    assert baselines.cannot_code("AVIF", (2, 32769)) and not baselines.cannot_code("lanczos2+AVIF", (2, 32769))
    notes = []
    rows = compare.compare(img, notices=notes)
    assert "WEBP" not in {r["codec"] for r in rows} and {"JPEG", "AVIF"} <= {r["codec"] for r in rows}
    assert notes == ["WEBP left out: WebP codes at most 100 pixels a side"]
    assert "WEBP" not in {p["codec"] for p in rd.baseline_points(img)}


def test_compare_gives_each_baseline_at_rescodecs_own_size():
    """compare set rescodec beside each baseline's largest file no larger than
    its own, up to 8 % smaller, which overstated rescodec's lead by up to
    0.3 dB (JPEG); dPSNR is now the baseline between its two qualities
    around rescodec's size."""
    from rescodec.evaluation.metrics import psnr
    img = gradient_image(64, 96)
    sizes = {q: len(baselines.encode_at(img, "WEBP", q)) for q in (40, 41)}
    assert sizes[40] < sizes[41]
    target = (sizes[40] + sizes[41]) // 2
    m = baselines.matched(img, "WEBP", target)
    assert m.setting == "q=40" and m.nbytes == sizes[40]
    lo = psnr(img, m.decoded)
    hi = psnr(img, baselines.decode_bytes(baselines.encode_at(img, "WEBP", 41)))
    f = np.log(target / sizes[40]) / np.log(sizes[41] / sizes[40])
    assert baselines.psnr_at_size(img, "WEBP", m, target) == pytest.approx(lo + f * (hi - lo))
    assert baselines.psnr_at_size(img, "WEBP", m, sizes[40]) == lo
    tiny = baselines.matched(img, "WEBP", 10)
    assert tiny.note and np.isnan(baselines.psnr_at_size(img, "WEBP", tiny, 10))


def test_summarise_leaves_out_a_codec_that_could_not_code_one_image():
    """bench ended in an internal error after all its work where a baseline
    (WebP past 16383 pixels a side) had no point on one image."""
    from rescodec.evaluation import rd
    curve = [{"codec": c, "setting": q, "bpp": b, "psnr": p} for c in ("rescodec", "AVIF", "JPEG", "WEBP")
             for q, (b, p) in enumerate(((0.05, 25.0), (0.2, 29.0), (0.6, 33.0), (1.6, 38.0)))]
    s = rd.summarise({"a.png": curve, "wide.png": [x for x in curve if x["codec"] != "WEBP"]})
    assert s["grid"]["WEBP"][0.2] == (29.0, 1) and s["grid"]["AVIF"][0.2] == (29.0, 2)
    assert s["bd_rate"]["rescodec vs WEBP, 0.03-1.5 bpp"][1] == 1
    assert s["bd_rate"]["rescodec vs AVIF, 0.03-0.2 bpp"] == (0.0, 2)


def test_an_exact_decode_counts_as_100_db_on_a_curve():
    """A graphic that decodes exactly (PSNR inf) made its curve infinite
    between its last finite point and the exact one, and the photo dropped
    out of every table at those sizes."""
    from rescodec.evaluation import rd
    ours = [{"bpp": 0.05, "psnr": 40.0}, {"bpp": 0.1, "psnr": float("inf")}]
    theirs = [{"bpp": 0.05, "psnr": 30.0}, {"bpp": 0.2, "psnr": float("inf")}]
    assert rd.psnr_at(ours, 0.1) == rd.EXACT_PSNR and 40 < rd.psnr_at(ours, 0.07) < 100
    s = rd.summarise({"g.png": [{"codec": "rescodec", **x} for x in ours] + [{"codec": "JPEG", **x} for x in theirs]})
    lead, n = s["margins"]["JPEG"][0.1]
    assert n == 1 and 0 < lead < 70


def test_bd_rate_in_integrates_exactly_and_needs_a_real_overlap():
    """The mean log-rate difference was sampled at 64 PSNRs, which weighs the
    ends twice (up to 0.36 points off per photo); and a sliver of overlap
    counted as much as the whole range."""
    from rescodec.evaluation import rd
    ref = [{"bpp": b, "psnr": p} for b, p in ((0.03, 24.0), (0.05, 26.5), (0.1, 28.0), (0.2, 31.0))]
    test = [{"bpp": b, "psnr": p} for b, p in ((0.02, 24.5), (0.045, 27.0), (0.07, 28.2), (0.15, 31.5))]
    r1, p1 = np.log([x["bpp"] for x in ref]), np.array([x["psnr"] for x in ref])
    r2, p2 = np.log([x["bpp"] for x in test]), np.array([x["psnr"] for x in test])
    ps = np.linspace(24.5, 31.0, 200_001)
    dense = (np.exp(np.mean(np.interp(ps, p2, r2) - np.interp(ps, p1, r1))) - 1) * 100
    assert abs(rd.bd_rate_in(ref, test, 0.03, 0.2) - dense) < 1e-3
    half = [{"bpp": 2 * x["bpp"], "psnr": x["psnr"]} for x in ref]
    assert abs(rd.bd_rate_in(ref, half, 0.03, 0.2) - 100) < 1e-9
    sliver = [{"bpp": 0.01, "psnr": 20.0}, {"bpp": 0.04, "psnr": 25.0}]   # overlaps 24-25 dB of 24-31
    assert np.isnan(rd.bd_rate_in(ref, sliver, 0.03, 0.2)) and np.isnan(rd.bd_rate_in(ref, [], 0.03, 0.2))


def test_strip_labels_wrap_to_their_tile():
    """On a photo narrower than about 210 pixels each label ran into the next
    tile's, and the last was cut off."""
    from PIL import ImageDraw
    from rescodec.evaluation.compare import _wrap
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label = "lanczos2+AVIF q=0 420 B 17.22 dB"
    lines = _wrap(label, 90, draw)
    assert len(lines) > 1 and " ".join(lines) == label and all(draw.textlength(x) <= 90 for x in lines)
    assert _wrap("short", 90, draw) == ["short"]

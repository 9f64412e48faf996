"""The LR through AVIF (format versions 5 and 6): round trip, quality, container rules."""
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import rescodec
from rescodec import av1_item, codec, container, encoder, head_gain, lossy_lr, rate_control
from rescodec.errors import CorruptError
from rescodec.evaluation.baselines import bicubic_rescale
from rescodec.evaluation.metrics import psnr
from rescodec.settings import EncodeSettings, ladder

from conftest import as_legacy, with_header


def _avif(photo, q, scale=2, **kw):
    return codec.encode_ex(photo, EncodeSettings(scale=scale, lr_codec="avif", lr_quality=q, **kw))


def test_avif_lr_round_trip_and_quality_order(photo):
    """Higher LR quality: more bytes and more PSNR; every file decodes the same
    twice, as version 7 with the AVIF flag and a bare AV1 LR, above bicubic rescaling."""
    rows = []
    for q in (20, 50, 80):
        enc = _avif(photo, q)
        a, b = (codec.decode_array(enc.data)[0] for _ in range(2))
        assert np.array_equal(a, b) and a.shape == photo.shape
        assert enc.data[4] == 7 and enc.header.lr_codec == "avif"
        assert as_legacy(enc.data)[4] == 6
        assert codec.info(enc.data)["lr_codec"] == "av1"
        rows.append((len(enc.data), psnr(photo, a)))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    _, bic = bicubic_rescale(photo, 2)
    assert rows[-1][1] > psnr(photo, bic)


def test_lossless_files_in_the_legacy_layout_stay_version_4(photo):
    data = rescodec.encode(photo[:64, :64], scale=4, lr_codec="lossless")
    assert data[4] == 7 and codec.info(data)["lr_codec"] != "avif"
    assert as_legacy(data)[4] == 4


def test_an_avif_that_wrap_cannot_rebuild_is_stored_whole(photo, monkeypatch):
    """Another libavif's layout: the encoder keeps the whole AVIF (codec id 5)
    and the file decodes the same."""
    plain = _avif(photo, 40)
    monkeypatch.setattr(av1_item, "split", lambda avif, shape: None)
    whole = _avif(photo, 40)
    assert container.unpack(whole.data).sections[container.SECTION_LR][0] == container.AVIF
    assert len(whole.data) > len(plain.data) + 250
    assert np.array_equal(codec.decode_array(whole.data)[0], codec.decode_array(plain.data)[0])


def test_avif_settings_are_checked():
    with pytest.raises(ValueError, match="LR quality"):
        EncodeSettings(lr_codec="avif", lr_quality=101).validate()
    with pytest.raises(ValueError, match="LR codec"):
        EncodeSettings(lr_codec="webp").validate()
    with pytest.raises(ValueError, match="no LR step"):
        EncodeSettings(lr_codec="avif", lr_step=4).validate()
    for bad in (-1, 11, 3.0, True):
        with pytest.raises(ValueError, match="AVIF speed"):
            EncodeSettings(lr_speed=bad).validate()
    with pytest.raises(ValueError, match="AVIF speed is for an AVIF LR"):
        EncodeSettings(scale=2, lr_codec="lossless", lr_speed=4).resolved()


def test_avif_speed_changes_the_encoder_only(photo):
    """--speed: another AV1 stream of the same picture, with the same header,
    which the same decoder reads deterministically; the default speed is
    the better file (measured: +0.61 dB for 3.5 % more bytes than speed 8)."""
    slow, fast = _avif(photo, 50), _avif(photo, 50, lr_speed=8)
    assert slow.data != fast.data and slow.header == fast.header
    a, b = (codec.decode_array(fast.data)[0] for _ in range(2))
    assert np.array_equal(a, b)
    assert psnr(photo, codec.decode_array(slow.data)[0]) > psnr(photo, a) + 0.3
    assert len(slow.data) < 1.05 * len(fast.data)
    # a target is met at any speed
    target = len(slow.data)
    assert len(rescodec.encode(photo, scale=2, size=target, lr_speed=8)) <= target


def test_pruning_the_ab_partitions_reaches_libaom(photo):
    """The option benchmark lr-codecs measures: at speed 3 another stream of
    about the same size and quality; at speed 6, where libaom prunes them
    itself, the same bytes.  Files keep libaom's own choice."""
    lr = photo[:128, :192]
    pruned, full = lossy_lr.encode(lr, 50, 3, prune_ab=True), lossy_lr.encode(lr, 50, 3)
    assert pruned != full and abs(len(pruned) / len(full) - 1) < 0.05
    assert abs(psnr(lr, lossy_lr.decode(pruned, lr.shape)) - psnr(lr, lossy_lr.decode(full, lr.shape))) < 0.2
    assert lossy_lr.encode(lr, 50, 6, prune_ab=True) == lossy_lr.encode(lr, 50, 6)
    assert lossy_lr.encode(lr, 50, 3, prune_ab=False) == full


def test_container_refuses_inconsistent_avif_files(photo, monkeypatch):
    enc = _avif(photo[:64, :64], 40)
    enc = replace(enc, data=as_legacy(enc.data))   # versions 5-6 are what this checks
    flags = enc.data[5]
    assert flags & container.FLAG_AVIF
    with pytest.raises(CorruptError):      # AVIF flag in a version 4 file
        container.unpack(with_header(enc.data, version=4, flags=flags))
    with pytest.raises(CorruptError):      # an AVIF LR with an LR step
        container.unpack(with_header(enc.data, flags=flags | 2))
    with pytest.raises(CorruptError):      # codec id 6 without the flag
        container.unpack(with_header(enc.data, flags=flags & ~container.FLAG_AVIF))
    with pytest.raises(CorruptError):      # codec id 6 in a version 5 file
        container.unpack(with_header(enc.data, version=5))
    f = container.unpack(enc.data)
    short = container.short_av1(f.sections[container.SECTION_LR])
    assert container.pack(f.header, short, b"\x02", legacy=True)[4] == 6   # codec id 7 turned into 6
    monkeypatch.setattr(container, "long_av1", lambda p: p)   # a legacy writer that kept it
    with pytest.raises(CorruptError, match="codec id 7 before version 7"):
        container.unpack(container.pack(f.header, short, b"\x01", legacy=True))
    plain = as_legacy(rescodec.encode(photo[:64, :64], scale=2, lr_codec="lossless"))
    with pytest.raises(CorruptError):      # the flag on a lossless LR
        container.unpack(with_header(plain, version=5, flags=plain[5] | container.FLAG_AVIF))


def test_refine_on_an_avif_lr_is_never_below_a_higher_quality_of_its_size(photo):
    """--refine-iters's file is at least as good as the plain LR at the
    highest LR quality that fits in its bytes, coded at --refine's speed (so
    never below the plain LR at its own quality): the refined LR's, or that
    one instead."""
    img, q = photo[:96, :128], 60
    out = _avif(img, q, refine=6, device="cpu")
    assert any(n.startswith("refined") for n in out.notices)
    fits = []
    for k in range(q, 101):     # AVIF bytes grow with quality here
        e = _avif(img, k, lr_speed=lossy_lr.REFINE_SPEED)
        if len(e.data) > len(out.data):
            break
        fits.append(e)
    assert fits
    p_out = psnr(img, codec.decode_array(out.data)[0])
    assert p_out >= psnr(img, codec.decode_array(fits[-1].data)[0]) - 1e-9
    if any(n.startswith("refinement lost") for n in out.notices):
        assert out.data in [e.data for e in fits]


def test_refine_on_an_avif_lr_codes_it_at_speed_0_without_the_descent(photo, monkeypatch):
    """refine=True (the CLI's --refine) on an x2 or x4 AVIF LR: the plain LR
    coded at lossy_lr.REFINE_SPEED, and no descent (settings.refine_steps)."""
    from rescodec import refine

    def never(*args, **kw):
        raise AssertionError("descended on an AVIF LR")
    monkeypatch.setattr(refine, "refine_lr", never)
    img = photo[:96, :128]
    for s in (2, 4):
        out = _avif(img, 20, scale=s, refine=True, device="cpu")
        slow = _avif(img, 20, scale=s, lr_speed=lossy_lr.REFINE_SPEED)
        assert out.data == slow.data != _avif(img, 20, scale=s).data
        assert "refined: the LR at AVIF speed 0" in out.notices


def test_refine_steps_of_each_lr():
    """refine=True: no descent on an AVIF LR, the method's own steps on a
    lossless one; a number: that many steps; anything else is refused."""
    from rescodec import refine
    assert EncodeSettings(scale=2, quality=20, refine=True).resolved().refine_steps == 0
    lossless = EncodeSettings(scale=2, lr_codec="lossless", refine=True)
    assert lossless.resolved().refine_steps == refine.RD_ITERS
    assert replace(lossless, refine_method="hcd").resolved().refine_steps == refine.DEFAULT_ITERS
    assert EncodeSettings(scale=2, quality=20, refine=7).resolved().refine_steps == 7
    assert EncodeSettings(scale=1, quality=20, refine=7).resolved().refine_steps == 0   # no small picture
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="refine must be"):
            EncodeSettings(refine=bad).validate()


def test_the_descent_round_trips_at_speed_3_while_the_file_is_coded_at_0(photo, monkeypatch):
    """--refine-iters on an AVIF LR: each step's round trip at lossy_lr.SPEED
    (speed 0 would take seconds a step), the file at REFINE_SPEED."""
    speeds, real = [], lossy_lr.round_trip

    def spy(y, qualities, speed=None, *args, **kw):
        speeds.append(speed)
        return real(y, qualities, speed, *args, **kw)
    monkeypatch.setattr(lossy_lr, "round_trip", spy)
    st = EncodeSettings(scale=2, lr_quality=40, refine=2, device="cpu").resolved()
    assert st.avif_speed == lossy_lr.REFINE_SPEED
    _avif(photo[:64, :96], 40, refine=2, device="cpu")
    assert speeds and set(speeds) == {lossy_lr.SPEED}


def test_a_refinement_that_loses_gives_way_to_a_higher_quality(photo, monkeypatch):
    """A refined LR that is worse per byte (here: noise) is replaced by the
    plain LR at the highest quality that fits its size, with a notice."""
    from rescodec import refine
    img = photo[:96, :128]

    def noisy(net, hr, *args, **kw):
        y = net(hr)[:, :3].clamp(0, 1)
        return (y + 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1), 0.0, 1.0
    monkeypatch.setattr(refine, "refine_lr", noisy)
    out = _avif(img, 40, refine=2, device="cpu")
    lost = [n for n in out.notices if n.startswith("refinement lost to LR quality")]
    assert lost
    # coded as --refine codes the LR: at speed 0
    assert out.data == _avif(img, int(lost[0].split()[5]), lr_speed=lossy_lr.REFINE_SPEED).data


def test_a_refinement_with_no_gain_writes_the_plain_file(photo, monkeypatch):
    """Where no step improved (refine_lr's PSNR after equals before), the file
    is the plain encode's, and no same-size comparison is run for it."""
    from rescodec import refine

    def no_gain(net, hr, *args, **kw):
        return torch.zeros(1, 3, hr.shape[-2] // 2, hr.shape[-1] // 2), 30.0, 30.0

    def never(*args, **kw):
        raise AssertionError("compared a refinement that did not happen")
    monkeypatch.setattr(refine, "refine_lr", no_gain)
    monkeypatch.setattr(rate_control, "refined_or_higher_quality", never)
    img = photo[:96, :128]
    out = _avif(img, 40, refine=2, device="cpu")
    assert any(n.startswith("not refined: no step improved") for n in out.notices)
    assert out.data == _avif(img, 40, lr_speed=lossy_lr.REFINE_SPEED).data


def _noisy_refinement(monkeypatch):
    """refine_lr made to return noise for the LR, kept as it is (no comparison
    with a higher LR quality): a big refined file that plain files of its
    size beat."""
    from rescodec import refine

    def noisy(net, hr, *args, **kw):
        y = net(hr)[:, :3]
        return torch.rand(y.shape, generator=torch.Generator().manual_seed(0)), 0.0, 1.0

    def keep_refined(pic, st, whash, net, y, refined, levels, notices):
        return encoder.pack_file(pic, st, whash, refined, levels, net)
    monkeypatch.setattr(refine, "refine_lr", noisy)
    monkeypatch.setattr(rate_control, "refined_or_higher_quality", keep_refined)


def test_refine_where_q_chose_the_scale_keeps_the_best_plain_file_of_its_size(photo, monkeypatch):
    """--refine with the scale left to -q: where a plain file of another
    scale fits in the refined file's bytes and decodes better, that file is
    written (as --size would choose it among those scales), with a notice."""
    _noisy_refinement(monkeypatch)
    monkeypatch.setattr(rate_control, "GRAPHICS_GAP_DB", {2: 1e9, 4: 1e9})   # the noise looks like graphics
    img = photo[:96, :128]
    out = codec.encode_ex(img, EncodeSettings(quality=20, refine=2, device="cpu"))
    scale, lr_q = ladder(20)
    noisy = codec.encode_ex(img, EncodeSettings(scale=scale, lr_quality=lr_q, refine=2, device="cpu"))
    assert any(n.startswith("a plain x") for n in out.notices)
    assert len(out.data) <= len(noisy.data)
    assert psnr(img, codec.decode_array(out.data)[0]) > psnr(img, codec.decode_array(noisy.data)[0])
    best_other, _, _ = rate_control.encode_to_target(codec.images.load(img), EncodeSettings(size=len(noisy.data)),
                                               None, scales=(1, 4))   # x2's own were weighed before
    assert out.data == best_other


def test_refine_at_a_forced_scale_searches_no_other_scale(photo, monkeypatch):
    """-s (or --model, or --lr-quality) fixes what -q would choose: no search."""
    _noisy_refinement(monkeypatch)

    def never(*args, **kw):
        raise AssertionError("searched other scales")
    monkeypatch.setattr(rate_control, "encode_to_target", never)
    img = photo[:96, :128]
    for extra in (dict(scale=2), dict(model="rescodec-x2-avif-v12"), dict(lr_quality=10)):
        out = codec.encode_ex(img, EncodeSettings(quality=20, refine=2, device="cpu", **extra))
        assert out.header.scale == 2


def test_refine_checks_x2_for_x1_files_only_up_to_its_limit(photo, monkeypatch):
    """At x1 AVIF quality up to X1_SEARCH_MAX_QUALITY (-q 45: 17) the search
    tries x2, the ladder's neighbour; above it (-q 75: 40) nothing."""
    class Searched(Exception):
        pass

    def search(pic, settings, net, scales=None):
        raise Searched(scales)
    monkeypatch.setattr(rate_control, "encode_to_target", search)
    img = photo[:64, :96]
    assert EncodeSettings(quality=45).resolved().lr_quality <= rate_control.X1_SEARCH_MAX_QUALITY
    with pytest.raises(Searched) as e:
        codec.encode_ex(img, EncodeSettings(quality=45, refine=1, device="cpu"))
    assert e.value.args == ((2,),)
    assert EncodeSettings(quality=75).resolved().lr_quality > rate_control.X1_SEARCH_MAX_QUALITY
    assert codec.encode_ex(img, EncodeSettings(quality=75, refine=1, device="cpu")).header.scale == 1


def test_quality_ladder_is_monotone():
    """-q picks (scale, LR quality): every step up either keeps the scale and
    raises the LR quality, or moves to a finer scale."""
    from rescodec.settings import ladder
    pts = [ladder(q) for q in range(101)]
    for (s0, l0), (s1, l1) in zip(pts, pts[1:]):
        assert (s1 == s0 and l1 >= l0) or s1 < s0
    with pytest.raises(ValueError):
        ladder(101)


def test_bytes_and_psnr_grow_with_quality_across_the_scale_switch():
    """-q 4 is x4 and -q 5 is x2 (settings.QUALITY_LADDER): neither the file
    nor its PSNR may shrink there, or on the steps around it."""
    import skimage.data
    img = skimage.data.chelsea()
    rows = []
    for q in (0, 2, 4, 5, 8):
        data = rescodec.encode(img, quality=q)
        rows.append((len(data), psnr(img, codec.decode_array(data)[0])))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


@pytest.mark.parametrize("kind", ["bpp", "size"])
def test_targets_are_met_or_the_nearest_is_said(photo, kind):
    h, w = photo.shape[:2]
    for bpp in (0.3, 1.0):
        want = {"bpp": bpp} if kind == "bpp" else {"size": int(bpp * h * w / 8)}
        enc = codec.encode_ex(photo, EncodeSettings(lr_codec="avif", **want))
        got = 8 * len(enc.data) / (h * w)
        assert got <= bpp and got > 0.8 * bpp, (bpp, got)
        assert enc.header.scale in (1, 2, 4) and enc.data[4] == (8 if enc.header.scale == 1 else 7)
        # more than 5 % under: said, with the share (it was said only above AVIF quality 100)
        said = [n for n in enc.notices if "the file that decodes best within it is" in n]
        assert len(said) == (got < 0.95 * bpp), (bpp, got, enc.notices)
    tiny = codec.encode_ex(photo, EncodeSettings(lr_codec="avif", size=50))
    assert any("below the smallest file" in n for n in tiny.notices)
    # where metadata is most of the smallest file, the note says so
    from PIL import Image
    im = Image.fromarray(photo[:48, :64])
    exif = Image.Exif()
    exif[0x9286] = np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes()
    im.info["exif"] = exif.tobytes()
    meta = codec.encode_ex(im, EncodeSettings(size=2000))
    said = [n for n in meta.notices if "below the smallest file" in n]
    assert len(said) == 1 and "bytes are metadata (--metadata none leaves the metadata out)" in said[0], said
    # above the largest file (AVIF quality 100): the largest, said; it was written in silence
    huge = codec.encode_ex(photo[:48, :64], EncodeSettings(lr_codec="avif", size=10 ** 6))
    said = [n for n in huge.notices if "above the largest file" in n]
    assert len(said) == 1 and f"wrote that ({len(huge.data)} bytes" in said[0] and huge.header.scale == 1
    assert huge.data == codec.encode_ex(photo[:48, :64], EncodeSettings(scale=1, lr_quality=100)).data
    assert not any("largest" in n for n in enc.notices)


def test_a_psnr_just_short_of_a_target_is_not_printed_as_reaching_it():
    assert rate_control._short_of(29.99997) == "29.99" and rate_control._short_of(30.004) == "30.00"


def test_a_psnr_target_takes_the_lowest_q_that_reaches_it(photo, monkeypatch):
    """Bisection over -q: the file written is -q's own, it reaches the
    target, and the -q below it (which the search decoded) does not.  The
    image's flat pixels are counted once, not once a candidate."""
    small = photo[:48, :64]
    seen, counted = [], []
    real, count = rate_control.encode_quality, head_gain.flat_share
    monkeypatch.setattr(rate_control, "encode_quality", lambda pic, st, net=None, progress=None:
                        seen.append(st.quality) or real(pic, st, net, progress))
    monkeypatch.setattr(head_gain, "flat_share", lambda x: counted.append(1) or count(x))
    for target in (28.0, 36.0):
        seen.clear(), counted.clear()
        enc = codec.encode_ex(small, EncodeSettings(psnr=target))
        assert len(counted) == 1
        q = int(re.search(r"-q (\d+) reaches", " ".join(enc.notices)).group(1))
        assert len(seen) <= 8 and q in seen and (q == 0 or q - 1 in seen)
        assert enc.data == codec.encode_ex(small, EncodeSettings(quality=q)).data
        assert psnr(small, codec.decode_array(enc.data)[0]) >= target
        if q > 0:
            assert psnr(small, codec.decode_array(codec.encode_ex(small, EncodeSettings(quality=q - 1)).data)[0]) \
                < target
    assert sum(41 <= q <= 85 for q in seen) >= 2   # 36 dB: x1 candidates below AVIF quality 61, each asking
    enc = codec.encode_ex(np.full((32, 48, 3), 255, np.uint8), EncodeSettings(psnr=100))
    assert any(re.match(r"-q \d+ decodes exactly, the target of 100 dB", n) for n in enc.notices), enc.notices
    enc = codec.encode_ex(small, EncodeSettings(psnr=99))   # beyond -q 100: its file, and a note
    assert enc.data == codec.encode_ex(small, EncodeSettings(quality=100)).data
    assert any("above what -q 100 reaches" in n for n in enc.notices)


def test_a_psnr_target_on_a_grey_image_is_judged_on_its_grey_decode(photo):
    """Decode gives a grey image one channel: the note's dB is that one's."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(photo[:48, :64]).convert("L").save(buf, "PNG")
    enc = codec.encode_ex(buf.getvalue(), EncodeSettings(psnr=30))
    said = float(re.search(r"reaches ([\d.]+) dB", " ".join(enc.notices)).group(1))
    out = np.asarray(rescodec.decode(enc.data), np.float64)
    grey = np.asarray(Image.open(buf).convert("L"), np.float64)
    assert out.ndim == 2 and said == pytest.approx(10 * np.log10(255 ** 2 / np.mean((out - grey) ** 2)), abs=0.006)


@pytest.mark.parametrize("options, said", [
    (dict(psnr=35, quality=50), "one of"), (dict(psnr=0), "target PSNR"), (dict(psnr=101), "target PSNR"),
    (dict(psnr=float("nan")), "target PSNR"), (dict(psnr=35, refine=True), "refinement"),
    (dict(psnr=35, lr_quality=20), "LR quality"), (dict(psnr=35, lr_codec="lossless"), "AVIF LR")])
def test_a_psnr_target_refuses_what_it_cannot_go_with(options, said):
    with pytest.raises(ValueError, match=said):
        EncodeSettings(**options).validate()


def test_a_psnr_target_at_a_scale_with_a_lossless_small_picture_is_refused_before_any_work(photo, monkeypatch):
    with pytest.raises(ValueError, match="x8 keeps a lossless one"):
        EncodeSettings(psnr=30, scale=8).resolved()
    monkeypatch.setattr(rate_control, "encode_quality", lambda *a, **k: pytest.fail("an encode"))
    for options in (dict(scale=16), dict(model="rescodec-x2-v8")):   # the API too, not only the command line
        with pytest.raises(ValueError, match="keeps a lossless one"):
            codec.encode_ex(photo[:32, :32], EncodeSettings(psnr=30, **options))
    with pytest.raises(ValueError, match="no LR step or colour space"):
        EncodeSettings(psnr=30, lr_step=1).validate()
    assert EncodeSettings(psnr=30, scale=2).resolved().lr_codec == "avif"


def test_one_rate_control_at_a_time():
    with pytest.raises(ValueError, match="one of"):
        EncodeSettings(quality=50, bpp=0.5).validate()
    with pytest.raises(ValueError, match="quality"):
        EncodeSettings(quality=-1).validate()


def test_pillow_maps_quality_and_refuses_unknown_options(photo):
    import io
    from PIL import Image
    im = Image.fromarray(photo[:64, :64])
    small, big = io.BytesIO(), io.BytesIO()
    im.save(small, "RSC", quality=10, lr_codec="avif")
    im.save(big, "RSC", quality=90, lr_codec="avif")
    assert len(small.getvalue()) < len(big.getvalue())
    with pytest.raises(ValueError, match="unknown encode option"):
        im.save(io.BytesIO(), "RSC", optimize=True)


def test_avif_rate_proxy_ranks_lrs_like_avif_bytes():
    """The training rate term orders LRs as AVIF's bytes do: a smooth picture,
    a photo, the photo with noise."""
    import skimage.data
    import torch
    photo = skimage.data.astronaut()[::4, ::4]
    rng = np.random.default_rng(0)
    smooth = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(photo).resize(
        (32, 32)).resize(photo.shape[1::-1]))
    noisy = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    imgs = [smooth, photo, noisy]
    proxy = [lossy_lr.rate_proxy(torch.from_numpy(i / 255.0).permute(2, 0, 1)[None].float()).item()
             for i in imgs]
    size = [len(lossy_lr.encode(i, 70)) for i in imgs]
    assert proxy == sorted(proxy) and size == sorted(size)


def test_training_with_the_avif_rate_term(tmp_path):
    from rescodec.flow import FlowConfig
    from rescodec.training import train as T
    d = tmp_path / "img"
    d.mkdir()
    from PIL import Image
    from conftest import gradient_image
    for i in range(2):
        Image.fromarray(gradient_image(64, 64, seed=i)).save(d / f"{i}.png")
    cfg = T.TrainConfig(data=[str(d)], patch=32, batch=2, steps=2, threads=1, lr_codec="avif",
                        lambda_rate=0.03)
    logs = []
    T.train(FlowConfig(scale=2, width=8, blocks_per_level=1), cfg, tmp_path / "run", log=logs.append)
    assert any(" rate " in m for m in logs)


def test_default_quality_beats_jpeg_on_chelsea():
    """The shipped AVIF-LR models beat JPEG at the same size on chelsea:
    measured +3.65 dB at -q 60 (0.166 bpp) and +2.11 at -q 75 (0.314 bpp)."""
    import skimage.data
    from rescodec.evaluation.baselines import jpeg_at_bpp
    img = skimage.data.chelsea()
    for q, floor in ((60, 3.0), (75, 1.6)):
        data = rescodec.encode(img, quality=q)
        bpp = 8 * len(data) / (img.shape[0] * img.shape[1])
        margin = psnr(img, np.asarray(rescodec.decode(data))) - jpeg_at_bpp(img, bpp)["psnr"]
        assert margin > floor, (q, margin)


def test_round_trip_with_workers_matches_one_at_a_time():
    """Training's parallel round trip gives the same LR, bytes and gradient path."""
    import skimage.data
    import torch
    photo = skimage.data.astronaut()[:192, :192]
    y = torch.from_numpy(photo / 255.0).permute(2, 0, 1).float().reshape(3, 4, 48, 4, 48)
    y = y.permute(1, 3, 0, 2, 4).reshape(16, 3, 48, 48).requires_grad_(True)
    q = list(range(0, 80, 5))
    one, sizes_one = lossy_lr.round_trip(y, q, lossy_lr.TRAIN_SPEED)
    many, sizes_many = lossy_lr.round_trip(y, q, lossy_lr.TRAIN_SPEED, workers=4)
    assert sizes_one == sizes_many and len(set(sizes_one)) > 8
    assert torch.equal(one, many)
    many.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))   # straight through


def _ranged_defaults(scale=2):
    from rescodec import weights
    return [(n, e["lr_qualities"]) for n, e in weights.manifest().items()
            if e.get("scale") == scale and e.get("default") and "lr_qualities" in e]


def test_q_picks_the_decoder_for_its_lr_quality_and_grows_across_the_switch():
    """-q whose LR quality is in a ranged decoder's range is decoded by it,
    the rest by the plain default; bytes and PSNR still grow with -q where the
    decoder changes."""
    import skimage.data
    from rescodec.settings import ladder
    from rescodec import weights
    ranged = {s: _ranged_defaults(s) for s in (1, 2)}
    plain = {s: weights.default_model(s, "avif") for s in (1, 2)}

    def expected(scale_lq):
        s, lq = scale_lq
        return next((n for n, (lo, hi) in ranged[s] if lo <= lq <= hi), plain[s])
    for q in range(5, 101):
        assert EncodeSettings(quality=q).resolved().model == expected(ladder(q)), q
    img = skimage.data.chelsea()
    edges = [q for q in range(5, 100) if expected(ladder(q)) != expected(ladder(q + 1))]
    assert len(edges) >= 3    # x2's two decoders, x2 to x1, x1's heads
    for edge in edges:
        rows = []
        for q in (edge - 1, edge, edge + 1, edge + 2):
            enc = codec.encode_ex(img, EncodeSettings(quality=q))
            rows.append((len(enc.data), psnr(img, codec.decode_array(enc.data)[0]), enc.header.model))
        assert (rows[1][2], rows[2][2]) == (expected(ladder(edge)), expected(ladder(edge + 1)))
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
        assert [r[1] for r in rows] == sorted(r[1] for r in rows), rows


def test_a_target_is_decoded_by_the_default_for_the_lr_quality_it_reached(photo):
    """--bpp: the file is the one -s 2 --lr-quality q gives for the LR quality
    q the search reached, so it names that quality's default decoder."""
    from rescodec import weights
    small = photo[:96, :128]
    models = set()
    for bpp in (0.16, 0.6):   # LR quality 30 and 70 on this crop
        enc = codec.encode_ex(small, EncodeSettings(scale=2, bpp=bpp))
        reached = None
        for q in range(101):   # bytes grow with the LR quality
            data = codec.encode_ex(small, EncodeSettings(scale=2, lr_quality=q)).data
            if data == enc.data:
                reached = q
            if len(data) >= len(enc.data):
                break
        assert reached is not None, bpp
        assert enc.header.model == weights.default_model(2, "avif", reached)
        models.add(enc.header.model)
    assert len(models) == 2   # one target in the low-rate decoder's range, one above it


@pytest.mark.parametrize("kw,said", [
    (dict(bpp="0.2"), "target bpp"), (dict(temperature="a"), "temperature"), (dict(model=3), "model name"),
    (dict(scale=2.0), "unsupported scale"), (dict(quality=True), "quality must be an integer"),
    (dict(size=True), "target size"), (dict(bits=2.0), "mask bits must be an integer"),
    (dict(norm=True), "mask norm must be an integer"), (dict(threshold="50"), "mask threshold must be a number"),
    (dict(sigma=None), "mask sigma must be a number"), (dict(refine_eps="a"), "refine_eps must be"),
    (dict(refine_alpha=0.0), "refine_alpha must be"), (dict(refine_lambda=float("nan")), "refine_lambda must be"),
    (dict(seed="3"), "seed must be an integer in \\[0, 2\\^32\\), got '3'")])
def test_options_of_the_wrong_type_are_value_errors_that_name_them(kw, said):
    with pytest.raises(ValueError, match=said):
        EncodeSettings(**kw).validate()


def test_numpy_numbers_stand_for_python_ones():
    import numpy as np
    st = EncodeSettings(scale=np.int64(4), quality=np.int32(20), threshold=np.float32(40), refine=np.int64(2))
    assert (st.scale, st.quality, st.threshold, st.refine) == (4, 20, 40.0, 2)
    assert type(st.scale) is int and type(st.threshold) is float and st.validate() == EncodeSettings(
        scale=4, quality=20, threshold=40.0, refine=2)


def test_a_target_with_a_model_searches_that_models_scale(photo):
    enc = codec.encode_ex(photo, EncodeSettings(bpp=0.3, model="rescodec-x2-avif-v12"))
    assert enc.header.scale == 2 and enc.header.model == "rescodec-x2-avif-v12"
    with pytest.raises(ValueError, match="rescodec-x2-v8 keeps a lossless one"):
        codec.encode_ex(photo, EncodeSettings(bpp=0.3, model="rescodec-x2-v8"))


def test_a_header_whose_size_is_not_the_small_pictures_is_corrupt(photo):
    """libavif would scale an AV1 frame to the size the rebuilt AVIF file's
    ispe claims; the reader refuses it, as the encoder cannot write it."""
    from dataclasses import replace
    from rescodec import container
    from rescodec.errors import CorruptError
    f = codec.unpack(rescodec.encode(photo[:64, :96], quality=20))
    lr, mask = f.sections[container.SECTION_LR], f.sections[container.SECTION_MASK]
    data = container.pack(replace(f.header, width=192, height=128), lr, mask)
    with pytest.raises(CorruptError, match="an AV1 frame of 48x32 for a small picture of 96x64"):
        rescodec.decode(data)


def test_an_av1_picture_not_in_8_bit_4_4_4_is_refused(photo):
    """The spec's LR is 8-bit RGB in 4:4:4 (AV1 seq_profile 1); libavif
    would decode 4:2:0 or grey too, and Pillow convert it."""
    import io
    from PIL import Image
    f = codec.unpack(rescodec.encode(photo[:48, :64], quality=20))
    assert f.header.scale == 2
    for options in ({"subsampling": "4:2:0"}, {"subsampling": "4:0:0"}):
        buf = io.BytesIO()
        Image.fromarray(photo[:24, :32]).save(buf, "AVIF", quality=50, **options)
        data = container.pack(f.header, bytes([container.AVIF]) + buf.getvalue(), f.sections[container.SECTION_MASK])
        with pytest.raises(CorruptError, match="another format than 8-bit 4:4:4"):
            rescodec.decode(data)


def test_an_x1_file_past_pillows_own_limit_decodes(photo, monkeypatch):
    """At x1 the small picture is the photo: Pillow's bomb limit (89 MP) must
    not refuse what rescodec's own limit lets through."""
    from PIL import Image
    data = rescodec.encode(photo[:64, :96], quality=75)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert rescodec.decode(data).size == (96, 64)
    assert len(rescodec.encode(photo[:64, :96], quality=95)) > 0   # the encoder decodes it for the gain map


def _chart(h=192, w=256, seed=0):
    """Graphics: thin dark strokes and flat boxes on white, as a chart or a
    screenshot has them."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 40)
        if rng.random() < 0.5:
            img[y:y + 1 + rng.integers(0, 2), x:x + rng.integers(8, 40)] = 0   # a stroke
        else:
            img[y:y + 12, x:x + rng.integers(2, 12)] = rng.integers(0, 200, 3)   # a bar
    return img


def test_graphics_at_the_flows_qualities_are_coded_full_size():
    """-q 5-40 take x2 for photos, where x1's file of the same bytes decodes
    worse; a chart loses its strokes at half size, so the encoder writes x1's
    file where it decodes better by more than its extra bytes would buy."""
    img = _chart()
    for q in (20, 40):
        enc = codec.encode_ex(img, EncodeSettings(quality=q))
        flow = codec.encode_ex(img, EncodeSettings(scale=2, lr_quality=ladder(q)[1]))
        assert enc.header.scale == 1 and any(n.startswith("graphics:") for n in enc.notices)
        gain = psnr(img, codec.decode_array(enc.data)[0]) - psnr(img, codec.decode_array(flow.data)[0])
        extra = 100 * np.log(len(enc.data) / len(flow.data))
        assert gain > 3 and gain > head_gain.DB_PER_PERCENT * extra, (q, gain, extra)


def _text_page(h=256, w=384):
    """A white page with 12 lines of text and a red box."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    for i in range(12):
        d.text((10, 8 + 20 * i), f"Line {i}: the quick brown fox jumps over the lazy dog 0123456789", fill="black")
    d.rectangle((300, 200, 370, 245), fill=(200, 30, 30))
    return np.asarray(im)


def test_a_size_target_more_than_5_percent_over_the_file_is_said():
    """A text page's AVIF qualities step 1362, 1577 bytes: --size 1500 wrote
    1362 (91 %) in silence."""
    enc = codec.encode_ex(_text_page(), EncodeSettings(size=1500))
    assert len(enc.data) < 0.95 * 1500 and enc.notices == [
        f"the target of 1500 bytes: the file that decodes best within it is {len(enc.data)} bytes "
        f"({100 * len(enc.data) / 1500:.0f} % of it); x{enc.header.scale}'s at the next AVIF quality is "
        + enc.notices[0].rsplit(" ", 1)[1]]
    assert int(enc.notices[0].rsplit(" ", 1)[1]) > 1500


def test_a_text_pages_files_grow_with_q_across_the_graphics_check():
    """x1's extra bytes were priced linearly at photos' 0.08 dB per 1 %: at
    -q 8 a file 2.4x x2's needed 10.9 dB, its 10.8 fell short, and -q 8 wrote
    x2's file at half the bytes and 9.7 dB below -q 7's."""
    img = _text_page()
    files = [codec.encode_ex(img, EncodeSettings(quality=q)) for q in (7, 8, 11)]
    assert [e.header.scale for e in files] == [1, 1, 1]
    sizes = [len(e.data) for e in files]
    dbs = [psnr(img, codec.decode_array(e.data)[0]) for e in files]
    assert sizes == sorted(sizes) and dbs == sorted(dbs), (sizes, dbs)


def test_photos_keep_the_ladders_scale(photo):
    for q in (2, 20, 40):
        enc = codec.encode_ex(photo, EncodeSettings(quality=q))
        assert enc.header.scale == ladder(q)[0] and not any(n.startswith("graphics:") for n in enc.notices)


def test_images_over_the_looks_limit_keep_the_ladders_scale(monkeypatch):
    """The look codes the whole image (5 GiB at 144 MP): larger ones skip it."""
    img = _chart()
    monkeypatch.setattr(rate_control, "GRAPHICS_MAX_PIXELS", img.shape[0] * img.shape[1] - 1)
    assert codec.encode_ex(img, EncodeSettings(quality=20)).header.scale == 2


def test_refine_checks_graphics_too():
    """--refine's own search weighs x1 only within the flow file's size: a
    chart at -q 5 still gets x1's larger and far better file."""
    img = _chart()
    plain = codec.encode_ex(img, EncodeSettings(quality=5))
    refined = codec.encode_ex(img, EncodeSettings(quality=5, refine=1, device="cpu"))
    assert plain.header.scale == 1 and refined.header.scale == 1


def test_a_flat_picture_at_full_size_decodes_exactly():
    """A white page at -q 41-85: the head's ripple took white to 253-254;
    the gain map chosen for graphics takes it out."""
    for v in (0, 128, 255):
        img = np.full((64, 96, 3), v, np.uint8)
        for q in (45, 75):
            data = codec.encode_ex(img, EncodeSettings(quality=q)).data
            assert np.array_equal(codec.decode_array(data)[0], img), (v, q)




def test_refine_on_graphics_takes_the_graphics_file_first():
    """--refine's search of the neighbouring scales keeps to the small
    picture's bytes: on a screenshot it wrote an x1 file at that size, 1.6-5.3
    dB below plain -q's x1 file (which the graphics check makes larger)."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (192, 128), "white")
    for i in range(8):
        ImageDraw.Draw(im).text((4, 4 + 15 * i), "The quick brown fox jumps 0123456789", fill="black")
    img = np.asarray(im)
    plain = codec.encode_ex(img, EncodeSettings(quality=35))
    refined = codec.encode_ex(img, EncodeSettings(quality=35, refine=True))
    assert plain.header.scale == refined.header.scale == 1
    assert any(n.startswith("graphics: ") for n in refined.notices)
    assert psnr(img, codec.decode_array(refined.data)[0]) > psnr(img, codec.decode_array(plain.data)[0]) - 2


def test_a_target_that_lands_at_x1_takes_a_temperature_given_for_the_flow():
    """--size (and --refine's search) put the flow's Z temperature back into an
    x1 file's settings where x1's decoder changed with the quality: "an x1
    file has no mask fields, Z seed or Z temperature", exit 1."""
    img = np.full((48, 64, 3), (90, 140, 200), np.uint8)
    out = codec.encode_ex(img, EncodeSettings(quality=10, refine=True, temperature=0.5))
    assert out.header.scale == 1 and out.header.z_temperature == 0
    codec.decode_array(out.data)

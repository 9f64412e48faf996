"""The LR through AVIF (format version 5): round trip, quality, container rules."""
import numpy as np
import pytest

import rescodec
from rescodec import codec, container, lossy_lr
from rescodec.errors import CorruptError
from rescodec.evaluation.metrics import bicubic_rescale, psnr
from rescodec.settings import EncodeSettings

from conftest import with_header


def _avif(photo, q, scale=2, **kw):
    return codec.encode_ex(photo, EncodeSettings(scale=scale, lr_codec="avif", lr_quality=q, **kw))


def test_avif_lr_round_trip_and_quality_order(photo):
    """Higher LR quality: more bytes and more PSNR; every file decodes the same
    twice, as version 5 with the AVIF flag, above bicubic rescaling."""
    rows = []
    for q in (20, 50, 80):
        enc = _avif(photo, q)
        a, b = (codec.decode_array(enc.data)[0] for _ in range(2))
        assert np.array_equal(a, b) and a.shape == photo.shape
        assert enc.data[4] == 5 and enc.header.lr_codec == "avif"
        assert codec.info(enc.data)["lr_codec"] == "avif"
        rows.append((len(enc.data), psnr(photo, a)))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    _, bic = bicubic_rescale(photo, 2)
    assert rows[-1][1] > psnr(photo, bic)


def test_lossless_files_stay_version_4(photo):
    data = rescodec.encode(photo[:64, :64], scale=4, lr_codec="lossless")
    assert data[4] == 4 and codec.info(data)["lr_codec"] != "avif"


def test_the_lr_section_is_a_viewable_avif(photo):
    enc = _avif(photo, 40)
    f = container.unpack(enc.data)
    payload = f.sections[container.SECTION_LR]
    assert payload[0] == container.AVIF
    lr = lossy_lr.decode(payload[1:], f.header.lr_size + (3,))
    assert lr.shape == (photo.shape[0] // 2, photo.shape[1] // 2, 3)


def test_avif_settings_are_checked():
    with pytest.raises(ValueError, match="LR quality"):
        EncodeSettings(lr_codec="avif", lr_quality=101).validate()
    with pytest.raises(ValueError, match="LR codec"):
        EncodeSettings(lr_codec="webp").validate()
    with pytest.raises(ValueError, match="no LR step"):
        EncodeSettings(lr_codec="avif", lr_step=4).validate()


def test_container_refuses_inconsistent_avif_files(photo):
    enc = _avif(photo[:64, :64], 40)
    flags = enc.data[5]
    assert flags & container.FLAG_AVIF
    with pytest.raises(CorruptError):      # AVIF flag in a version 4 file
        container.unpack(with_header(enc.data, version=4, flags=flags))
    with pytest.raises(CorruptError):      # an AVIF LR with an LR step
        container.unpack(with_header(enc.data, flags=flags | 2))
    with pytest.raises(CorruptError):      # codec id 5 without the flag
        container.unpack(with_header(enc.data, flags=flags & ~container.FLAG_AVIF))
    plain = rescodec.encode(photo[:64, :64], scale=2, lr_codec="lossless")
    with pytest.raises(CorruptError):      # the flag on a lossless LR
        container.unpack(with_header(plain, version=5, flags=plain[5] | container.FLAG_AVIF))


def test_refine_on_an_avif_lr_never_lowers_psnr(photo):
    img = photo[:64, :96]
    plain = _avif(img, 40)
    refined = _avif(img, 40, refine=4, device="cpu")
    p0, p1 = (psnr(img, codec.decode_array(e.data)[0]) for e in (plain, refined))
    assert p1 >= p0 - 1e-9
    assert any(n.startswith("refined") for n in refined.notices)


def test_quality_ladder_is_monotone():
    """-q picks (scale, LR quality): every step up either keeps the scale and
    raises the LR quality, or moves to a finer scale."""
    from rescodec.settings import ladder
    pts = [ladder(q) for q in range(101)]
    for (s0, l0), (s1, l1) in zip(pts, pts[1:]):
        assert (s1 == s0 and l1 >= l0) or s1 < s0
    with pytest.raises(ValueError):
        ladder(101)


@pytest.mark.parametrize("kind", ["bpp", "size"])
def test_targets_are_met_or_the_nearest_is_said(photo, kind):
    h, w = photo.shape[:2]
    for bpp in (0.3, 1.0):
        want = {"bpp": bpp} if kind == "bpp" else {"size": int(bpp * h * w / 8)}
        enc = codec.encode_ex(photo, EncodeSettings(lr_codec="avif", **want))
        got = 8 * len(enc.data) / (h * w)
        assert got <= bpp and got > 0.8 * bpp, (bpp, got)
        assert enc.header.scale in (2, 4) and enc.data[4] == 5
    tiny = codec.encode_ex(photo, EncodeSettings(lr_codec="avif", size=50))
    assert any("below the smallest file" in n for n in tiny.notices)


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

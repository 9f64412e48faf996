"""Bit-exact coding: the same file gives the same pixels in every process and
at every thread count; the encoder gives the same bytes."""
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import rescodec
from rescodec import codec, container, mask_coding, tiling, weights
from rescodec.evaluation.metrics import psnr
from rescodec.latent import DecoderInput

_CHILD = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from rescodec import codec
what, path = sys.argv[2], sys.argv[3]
if what == "decode":
    out = codec.decode_array(open(path, "rb").read())[0].tobytes()
else:
    import numpy as np
    out = codec.encode(np.load(path), **eval(sys.argv[4]))
print(hashlib.sha256(out).hexdigest())
"""


def _in_processes(what, path, threads=(1, 2, 4), options="{}"):
    return {subprocess.run([sys.executable, "-c", _CHILD, str(t), what, str(path), options],
                           capture_output=True, text=True, check=True).stdout for t in threads}


@pytest.fixture(scope="module")
def big():
    """Large enough for several of the decoder's tiles at x2 and x4."""
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((640, 448)))


@pytest.mark.parametrize("options", [dict(scale=4, lr_codec="lossless"),     # YCbCr codes
                                     dict(scale=2, lr_codec="avif", lr_quality=40)])  # prior, head, tiles
def test_decode_is_bit_exact_across_processes_and_threads(big, tmp_path, options):
    path = tmp_path / "f.rsc"
    path.write_bytes(rescodec.encode(big, **options))
    assert len(_in_processes("decode", path)) == 1


def test_refined_file_decodes_bit_exact(tmp_path):
    img = skimage.data.chelsea()[:128, :192]
    path = tmp_path / "r.rsc"
    path.write_bytes(rescodec.encode(img, scale=4, lr_codec="lossless", refine=3, device="cpu"))
    assert len(_in_processes("decode", path)) == 1


@pytest.mark.parametrize("options", ["dict(scale=4, lr_codec='lossless')",
                                     "dict(scale=2, lr_codec='avif', lr_quality=40)",
                                     "dict(scale=4, lr_codec='lossless', refine=3, device='cpu')",
                                     "dict(bpp=0.3, scale=2)"])   # the target's search and decodes
def test_encode_is_bit_exact_across_threads(big, tmp_path, options):
    path = tmp_path / "img.npy"
    np.save(path, big[:256, :320])
    assert len(_in_processes("encode", path, threads=(1, 2), options=options)) == 1


def _decoder_parts(data):
    """What decoder.decode_rgb hands the inverse: (model, LR, DecoderInput)."""
    f = codec.unpack(data)
    h = f.header
    levels = mask_coding.decode(f.sections[container.SECTION_MASK], h.lr_size, h.mask_bits)
    net = weights.load_model(h.model)
    return (net, codec.lr_image(f.sections[container.SECTION_LR], h),
            DecoderInput(net, levels, h.mask_bits, h.z_seed, h.z_temperature))


def test_the_latent_priors_tiles_give_the_whole_image_prior(big, monkeypatch):
    """The inverse's first pass: the prior in tiles with only its own reach
    around each gives the prior of the whole image, to float rounding."""
    data = rescodec.encode(big, scale=2, lr_codec="avif", lr_quality=40)
    net, lr, dec_in = _decoder_parts(data)
    assert net.prior is not None
    monkeypatch.setattr(tiling, "DECODE_CORE_LR", 48)    # 5 x 7 tiles
    tiled = tiling.latent_in_tiles(net, lr, dec_in)
    with torch.inference_mode():
        whole = net.inverse_prior(dec_in(tiling.to_tensor(lr)))
    assert (tiled - whole).abs().max() < 1e-5
    assert (whole[:, 4:] - dec_in(tiling.to_tensor(lr))[:, 4:]).abs().max() > 1e-3   # the prior acts


def test_fixed_tiles_cost_no_quality(big):
    """The decoder's tiles give the whole-image inverse's PSNR within 0.05 dB."""
    data = rescodec.encode(big, scale=2, lr_codec="lossless")
    net, lr, dec_in = _decoder_parts(data)
    with torch.inference_mode():
        whole = tiling.to_uint8(net.inverse(dec_in(tiling.to_tensor(lr))))
    tiled = codec.decode_array(data)[0]
    assert lr.shape[0] > tiling.DECODE_CORE_LR and lr.shape[1] > tiling.DECODE_CORE_LR  # 4+ tiles
    assert abs(psnr(big, tiled) - psnr(big, whole)) < 0.05

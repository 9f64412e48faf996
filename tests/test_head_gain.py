"""x1's gain map (head_gain.py): the encoder picks per 64x64 block how much
of the head's correction the decoder keeps; the file is version 9 exactly
when it holds a map; the decoder applies it in integers; a map that does not
pay for its bytes, or one without a head, is not written (or is corrupt)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from rescodec import codec, container, encoder, head_gain, lossy_lr, mask_coding, tiling, weights
from rescodec.errors import CorruptError
from rescodec.evaluation.metrics import psnr
from rescodec.flow import FlowConfig, RescaleFlow
from rescodec.settings import EncodeSettings

from conftest import gradient_image, with_header, x1_net, x1_settings

X1 = x1_settings()
harmful_net = x1_net   # its head changes the picture a lot: a map should turn it down


def test_apply_keeps_k_quarters_of_the_correction_rounded_half_up():
    d = np.array([[[10, 10, 10], [200, 0, 255]]], np.uint8)
    h = np.array([[[13, 7, 10], [255, 255, 0]]], np.uint8)
    for level, k in enumerate(head_gain.GAINS4):
        out = head_gain.apply(d, h, np.full((1, 1), level, np.uint8))
        want = np.clip(np.floor(d + k / 4 * (h.astype(float) - d) + 0.5), 0, 255)
        assert np.array_equal(out, want), level
    assert np.array_equal(head_gain.apply(d, h, np.zeros((1, 1), np.uint8)), h)   # level 0: the head
    assert np.array_equal(head_gain.apply(d, h, np.ones((1, 1), np.uint8)), d)    # level 1: no head


def test_choose_picks_each_blocks_best_gain_and_leaves_out_a_map_that_costs_more():
    rng = np.random.default_rng(1)
    B = head_gain.BLOCK
    d = rng.integers(60, 190, (B, 3 * B + 5, 3)).astype(np.uint8)   # a part block at the right
    h = np.clip(d.astype(int) + rng.integers(-20, 21, d.shape), 0, 255).astype(np.uint8)
    x = h.copy()                                     # block 0: the head is right
    x[:, B:2 * B] = d[:, B:2 * B]                    # block 1: AVIF is right
    x[:, 2 * B:] = head_gain.apply(d[:, 2 * B:], h[:, 2 * B:], np.full((1, 2), 3, np.uint8))   # g = 1/2
    levels = head_gain.choose(x, d, h, file_bytes=10 ** 6)
    assert levels.shape == head_gain.grid(*x.shape[:2]) == (1, 4)
    assert levels.tolist() == [[0, 1, 3, 3]]
    assert np.array_equal(head_gain.apply(d, h, levels), x)
    # a small gain (one block of four, under noise) pays in a large file, not in a small one
    noisy = np.clip(h.astype(int) + rng.integers(-12, 13, h.shape), 0, 255).astype(np.uint8)
    noisy[:, :B] = head_gain.apply(d[:, :B], noisy[:, :B], np.full((1, 1), 4, np.uint8))
    assert head_gain.choose(noisy, d, h, file_bytes=10 ** 6)[0, 0] == 4
    assert not head_gain.choose(noisy, d, h, file_bytes=300).any()
    assert not head_gain.choose(h, d, h, file_bytes=10 ** 6).any()   # nothing to gain


@pytest.fixture(scope="module")
def photo():
    return gradient_image(150, 200, seed=4)


def test_refine_at_x1_writes_a_gain_map_that_decodes_closer(photo):
    net = harmful_net()
    plain = codec.encode_ex(photo, X1, net=net)
    gained = codec.encode_ex(photo, replace(X1, refine=1), net=net)
    assert plain.data[4] == container.VERSION_X1 and gained.data[4] == container.VERSION_X1_GAINS
    assert "refined: AVIF speed 0; the head's gains in 12 blocks" in " ".join(gained.notices)
    f = codec.unpack(gained.data)
    # the photo's AVIF at speed 0 (lossy_lr.REFINE_SPEED), not the plain file's speed 3
    slow = codec.encode_ex(photo, replace(X1, lr_speed=lossy_lr.REFINE_SPEED), net=net).data
    assert f.sections[container.SECTION_LR] == codec.unpack(slow).sections[container.SECTION_LR]
    assert f.sections[container.SECTION_LR] != codec.unpack(plain.data).sections[container.SECTION_LR]
    d = codec.thumbnail(gained.data)
    levels = mask_coding.decode(f.sections[container.SECTION_MASK], (3, 4), head_gain.BITS)
    out = codec.decode_array(gained.data, net=net)[0]
    assert np.array_equal(out, head_gain.apply(d, tiling.restore_rgb(net, d), levels))
    assert np.array_equal(codec.decode_array(gained.data, net=net)[0], out)   # deterministic
    assert psnr(photo, out) > psnr(photo, codec.decode_array(plain.data, net=net)[0]) + 0.5
    assert np.array_equal(codec.decode_array(gained.data, net=net, fast=True)[0], d)


def test_refine_codes_the_avif_at_speed_0_unless_a_speed_is_asked_for():
    for q in (20, head_gain.GAINS_FROM, 90):
        assert replace(X1, lr_quality=q, refine=True).avif_speed == lossy_lr.REFINE_SPEED == 0
        assert replace(X1, lr_quality=q, refine=True, lr_speed=5).avif_speed == 5
    assert replace(X1, lr_quality=20).avif_speed == lossy_lr.SPEED
    assert replace(X1, lr_quality=90).avif_speed == lossy_lr.FAST_X1_SPEED
    for q in (2, 20):       # x4 and x2: their small picture, the same way
        st = EncodeSettings(quality=q).resolved()
        assert st.scale > 1 and st.avif_speed == lossy_lr.SPEED
        assert replace(st, refine=True).avif_speed == lossy_lr.REFINE_SPEED
        assert replace(st, refine=True, lr_speed=5).avif_speed == 5


def test_from_avif_quality_61_the_encoder_chooses_a_map_without_being_asked(photo):
    net = harmful_net()
    assert codec.encode_ex(photo, replace(X1, lr_quality=head_gain.GAINS_FROM - 1), net=net).data[4] == 8
    assert codec.encode_ex(photo, replace(X1, lr_quality=head_gain.GAINS_FROM), net=net).data[4] == 9


def test_flat_share_counts_pixels_equal_to_their_right_and_lower_neighbours():
    x = np.zeros((4, 5, 3), np.uint8)
    assert head_gain.flat_share(x) == 1.0
    x[1, 2, 0] = 1   # one changed channel: that pixel, its left and its upper neighbour are not flat
    assert head_gain.flat_share(x) == 1 - 3 / 12
    assert head_gain.flat_share(gradient_image(64, 64, seed=1)) < 0.05
    assert head_gain.flat_share(np.zeros((1, 9, 3), np.uint8)) == 0.0
    tall = np.repeat(np.repeat(gradient_image(20, 8, seed=2), 3, 0), 2, 1)   # flat in 3x2 cells
    naive = np.mean([(tall[i, j] == tall[i, j + 1]).all() and (tall[i, j] == tall[i + 1, j]).all()
                     for i in range(59) for j in range(15)])
    assert head_gain.flat_share(tall, band=7) == head_gain.flat_share(tall) == pytest.approx(naive)   # in bands
    assert 1 / 3 <= naive < 0.4


def test_below_avif_quality_61_graphics_get_a_map_and_photos_do_not(photo):
    """Graphics are told by their flat pixels; the head's ripple there costs
    more than a map (head_gain.FLAT_SHARE)."""
    net = harmful_net()
    chart = np.full(photo.shape, 255, np.uint8)
    chart[20:60, 30:90] = (40, 90, 200)
    chart[100:103, 10:190] = 0
    assert head_gain.flat_share(chart) >= head_gain.FLAT_SHARE > head_gain.flat_share(photo)
    low = replace(X1, lr_quality=30)
    mapped, plain = codec.encode_ex(chart, low, net=net).data, codec.encode_ex(photo, low, net=net).data
    assert mapped[4] == container.VERSION_X1_GAINS and plain[4] == container.VERSION_X1
    f = codec.unpack(mapped)
    headed = container.pack(f.header, f.sections[container.SECTION_LR], bytes([mask_coding.EMPTY]))
    assert psnr(chart, codec.decode_array(mapped, net=net)[0]) > psnr(chart, codec.decode_array(headed, net=net)[0]) + 1


def test_version_8_has_no_gain_map_and_version_9_always_one(photo):
    net = harmful_net()
    v9 = codec.encode_ex(photo, replace(X1, refine=1), net=net).data
    v8 = codec.encode_ex(photo, X1, net=net).data
    for data in (v8, v9):   # the writer picks the version from the section; a wrong one is corrupt
        with pytest.raises(CorruptError, match="gain map"):
            codec.unpack(with_header(data, version=data[4] ^ 8 ^ 9))


def test_a_gain_map_for_a_model_with_no_head_or_of_all_level_0_is_corrupt(photo):
    net = harmful_net()
    v9 = codec.encode_ex(photo, replace(X1, refine=1), net=net).data
    headless = RescaleFlow(FlowConfig(scale=1, head_width=0)).eval()
    with pytest.raises(CorruptError, match="no head"):
        codec.decode_array(v9, net=headless)
    f = codec.unpack(v9)
    zeros = bytes([mask_coding.BITPLANES]) + mask_coding._encode_bitplanes(
        np.zeros(head_gain.grid(*photo.shape[:2]), np.uint8), head_gain.BITS)
    same_as_v8 = container.pack(f.header, f.sections[container.SECTION_LR], zeros)
    assert same_as_v8[4] == container.VERSION_X1_GAINS
    with pytest.raises(CorruptError, match="all level 0"):
        codec.decode_array(same_as_v8, net=net)
    # --fast leaves the head out, but not the checks: the same files were decoded
    for bad, said in ((v9, "no head"), (same_as_v8, "all level 0")):
        with pytest.raises(CorruptError, match=said):
            codec.decode_array(bad, net=headless if bad is v9 else net, fast=True)
    damaged = container.pack(f.header, f.sections[container.SECTION_LR], b"\x00garbage")
    with pytest.raises(CorruptError, match="mask section"):
        codec.decode_array(damaged, net=net, fast=True)


def test_the_encoders_estimate_of_the_head_is_within_a_level_of_the_decoders_at_any_thread_count(photo):
    net = weights.load_model("rescodec-x1-avif-v8")   # bfloat16 where the CPU has it natively
    exact = tiling.restore_rgb(net, photo)
    threads = torch.get_num_threads()
    try:
        estimates = []
        for n in (1, 2):
            torch.set_num_threads(n)
            estimates.append(encoder._head_estimate(net, photo))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(estimates[0], estimates[1])
    assert np.abs(estimates[0].astype(int) - exact).max() <= 1


def test_choose_and_apply_work_in_bands_with_the_same_result(monkeypatch):
    """Bands of block rows bound the encoder's and the decoder's memory; the
    levels and pixels are those of the whole."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (700, 333, 3)).astype(np.uint8)   # 11 x 6 blocks, part blocks at the edges
    d = np.clip(x.astype(int) + rng.integers(-9, 9, x.shape), 0, 255).astype(np.uint8)
    h = np.clip(d.astype(int) + rng.integers(-5, 6, x.shape), 0, 255).astype(np.uint8)
    h[:300] = x[:300]                                          # the head right in the upper blocks
    whole = head_gain.choose(x, d, h, 10 ** 6)
    assert whole[:4].tolist() == [[0] * 6] * 4 and whole[5:].all()
    decoded = head_gain.apply(d, h, whole)
    for rows in (1, 3):
        monkeypatch.setattr(head_gain, "BAND_ROWS", rows)
        assert np.array_equal(head_gain.choose(x, d, h, 10 ** 6), whole)
        assert np.array_equal(head_gain.apply(d, h, whole), decoded)

import numpy as np
import pytest
import torch

from rescodec.flow import FlowConfig, RescaleFlow, haar_forward, haar_inverse
from rescodec.weights import default_model, load_model


def _randomised(scale):
    torch.manual_seed(scale)
    m = RescaleFlow(FlowConfig(scale=scale, width=16))
    for p in m.parameters():          # the zero-initialised output convs too
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


def test_haar_is_exactly_invertible():
    x = torch.rand(2, 3, 8, 12)
    y = haar_forward(x)
    assert y.shape == (2, 12, 4, 6)
    assert torch.allclose(y[:, :3], x.reshape(2, 3, 4, 2, 6, 2).mean((3, 5)), atol=1e-6)
    assert (haar_inverse(y) - x).abs().max() < 1e-6


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_random_flow_invertible(scale):
    m = _randomised(scale)
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (1, 3 * scale * scale, 64 // scale, 48 // scale)
        assert (m.inverse(out) - x).abs().max() < 1e-5


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_shipped_flow_invertible(scale):
    m = load_model(default_model(scale))
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        assert (m.inverse(m(x)) - x).abs().max() < 1e-5


def test_split_shapes():
    out = torch.zeros(1, 48, 4, 4)
    y, b, z = RescaleFlow.split(out)
    assert (y.shape[1], b.shape[1], z.shape[1]) == (3, 1, 44)


@pytest.mark.parametrize("bad", [0, 3, 32])
def test_bad_scale(bad):
    with pytest.raises(ValueError, match="choose from 1, 2, 4, 8, 16"):
        RescaleFlow(FlowConfig(scale=bad))


def test_an_x1_model_is_at_most_a_head():
    with pytest.raises(ValueError, match="x1 model"):
        RescaleFlow(FlowConfig(scale=1, head_width=8, prior_width=8))
    assert not list(RescaleFlow(FlowConfig(scale=1)).parameters())
    net = RescaleFlow(FlowConfig(scale=1, head_width=8))
    x = torch.rand(1, 3, 6, 10)
    assert net.latent_channels == 3 and net.head.scale == 2 and torch.equal(net.forward(x), x)


def test_untrained_flow_is_haar():
    """Zero-initialised output convs: an untrained flow is the Haar pyramid,
    so Y is the box-filtered image."""
    m = RescaleFlow(FlowConfig(scale=4))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        y = RescaleFlow.split(m(x))[0]
    assert torch.allclose(y, x.reshape(1, 3, 4, 4, 4, 4).mean((3, 5)), atol=1e-6)


def test_deep_width_widens_only_levels_3_and_4():
    m = RescaleFlow(FlowConfig(scale=16, width=16, deep_width=40))
    widths = [lvl[0].phi.conv_in.out_channels for lvl in m.levels]
    assert widths == [16, 16, 40, 40]
    with pytest.raises(ValueError):
        FlowConfig(scale=8, deep_width=-1).validate()


def test_widened_copy_computes_the_same_and_inverts(tmp_path):
    """init_from_shallower on a wider deep_width: same output, then still exact."""
    from rescodec.training.train import init_from_shallower
    narrow = _randomised(8)
    torch.save({"model": narrow.state_dict()}, tmp_path / "narrow.pt")
    wide = RescaleFlow(FlowConfig(scale=8, width=16, deep_width=24))
    n, misfit = init_from_shallower(wide, str(tmp_path / "narrow.pt"))
    assert n == len(narrow.state_dict()) and misfit == []
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        assert (wide(x) - narrow(x)).abs().max() < 1e-5
        for p in wide.parameters():   # the new channels, perturbed, still invert exactly
            p.add_(torch.randn_like(p) * 0.01)
        assert (wide.inverse(wide(x)) - x).abs().max() < 1e-5


def test_init_from_a_wider_flow_names_what_it_left_out_and_refuses_where_nothing_fits(tmp_path):
    """A narrower flow cannot hold a wider one's subnets, nor a shallower one a
    deeper one's levels: they were skipped in silence."""
    from rescodec.training.train import InitError, init_from_shallower
    wide = RescaleFlow(FlowConfig(scale=4, width=16))
    torch.save({"model": wide.state_dict()}, tmp_path / "wide.pt")
    narrow = RescaleFlow(FlowConfig(scale=4, width=8))
    n, misfit = init_from_shallower(narrow, str(tmp_path / "wide.pt"))
    assert misfit and n + len(misfit) == len(wide.state_dict())
    torch.save({"model": {k: v for k, v in wide.state_dict().items() if k in misfit}}, tmp_path / "misfit.pt")
    with pytest.raises(InitError, match="none of its tensors fits"):
        init_from_shallower(narrow, str(tmp_path / "misfit.pt"))
    deeper = RescaleFlow(FlowConfig(scale=8, width=8))   # levels this flow has no place for
    torch.save({"model": deeper.state_dict()}, tmp_path / "deeper.pt")
    n, misfit = init_from_shallower(narrow, str(tmp_path / "deeper.pt"))
    assert n and misfit and all(k not in narrow.state_dict() for k in misfit)


@pytest.mark.parametrize("scale", [2, 16])
def test_latent_prior_invertible(scale):
    torch.manual_seed(1)
    m = RescaleFlow(FlowConfig(scale=scale, width=8, prior_width=8, prior_blocks=1))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        assert (m.inverse(m(x)) - x).abs().max() < 1e-5


def test_latent_prior_is_what_the_decoder_uses_for_z(tmp_path):
    """A prior added to a trained flow starts as the identity; trained, the
    decoder's Z' = 0 means Z = g(Y, B)."""
    from rescodec.training.train import init_from_shallower
    base = _randomised(4)
    torch.save({"model": base.state_dict()}, tmp_path / "base.pt")
    m = RescaleFlow(FlowConfig(scale=4, width=16, prior_width=8, prior_blocks=1)).eval()
    init_from_shallower(m, str(tmp_path / "base.pt"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (m(x) - base(x)).abs().max() < 1e-6
        for p in m.prior.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        yb = torch.rand(1, 4, 8, 8)
        z = m.prior(yb)
        assert z.abs().max() > 1e-3
        dec = m.inverse(torch.cat([yb, torch.zeros_like(z)], dim=1))
        assert (dec - base.inverse(torch.cat([yb, z], dim=1))).abs().max() < 1e-5
    assert m.prior_reach == 4 and base.prior_reach == 0
    with pytest.raises(ValueError):
        FlowConfig(scale=4, prior_width=-1).validate()


def test_forward_levels_gives_the_same_y_and_b_without_the_prior():
    m = RescaleFlow(FlowConfig(scale=2, width=8, prior_width=8, prior_blocks=1))
    for p in m.prior.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        full, levels = m(x), m.forward_levels(x)
    assert torch.equal(full[:, :4], levels[:, :4])
    assert (full[:, 4:] - levels[:, 4:]).abs().max() > 1e-3


def test_the_decoder_draws_z_in_units_of_z_std():
    """t = 1 draws Z with the model's z_std: z_std 0.5 at t = 1 is z_std 1 at t = 0.5."""
    from rescodec.latent import DecoderInput
    levels = np.zeros((4, 6), np.uint8)
    half = RescaleFlow(FlowConfig(scale=2, width=8, z_std=0.5))
    unit = RescaleFlow(FlowConfig(scale=2, width=8))
    a = DecoderInput(half, levels, 1, seed=3, temperature=1.0)(torch.zeros(1, 3, 4, 6))
    b = DecoderInput(unit, levels, 1, seed=3, temperature=0.5)(torch.zeros(1, 3, 4, 6))
    assert torch.equal(a, b) and a[:, 4:].abs().max() > 0
    with pytest.raises(ValueError):
        FlowConfig(scale=2, z_std=-1.0).validate()

import shutil

import pytest

from rescodec import weights
from rescodec.errors import WeightsError


def test_every_scale_has_a_default_model():
    for s in (2, 4, 8, 16):
        name = weights.default_model(s)
        assert weights.entry(name)["scale"] == s


def test_manifest_entries_are_complete_and_hashes_match():
    entries = weights.manifest()
    assert entries
    for name, e in entries.items():
        for key in ("file", "sha256", "scale", "config", "steps", "training_data", "validation"):
            assert key in e, (name, key)
        assert weights.sha256_file(weights.weights_dir() / e["file"]) == e["sha256"]
        assert weights.load_model(name).config.scale == e["scale"]


def test_tampered_weights_fail_the_hash_check(tmp_path, monkeypatch):
    name = weights.default_model(4)
    e = weights.entry(name)
    shutil.copy(weights.weights_dir() / weights.MANIFEST, tmp_path / weights.MANIFEST)
    data = bytearray((weights.weights_dir() / e["file"]).read_bytes())
    data[-100] ^= 1
    (tmp_path / e["file"]).write_bytes(bytes(data))
    monkeypatch.setenv("RESCODEC_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="SHA-256"):
        weights.load_model(name)


def test_unknown_model_and_scale():
    with pytest.raises(WeightsError, match="not installed"):
        weights.load_model("no-such-model")
    with pytest.raises(ValueError, match="choose from"):
        weights.default_model(3)


def test_empty_weights_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RESCODEC_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="no model for scale"):
        weights.default_model(4)


def test_exported_run_loads_passes_its_hash_and_counts_its_init(tmp_path, monkeypatch):
    """train -> export -> load, twice: the second run starts from the first
    model's file, so its entry names it and adds up both runs' CPU-hours."""
    import numpy as np
    from rescodec.training import train as T
    from rescodec.flow import FlowConfig
    monkeypatch.setenv("RESCODEC_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setattr(T, "list_images", lambda folders: ["x"] if folders else [])
    monkeypatch.setattr(T, "load_rgb", lambda p: np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    fc = FlowConfig(scale=2, width=8, blocks_per_level=1)
    T.train(fc, T.TrainConfig(data=["d"], patch=16, batch=2, steps=4, threads=1), tmp_path / "a",
            log=lambda m: None)
    a = weights.export(tmp_path / "a" / "checkpoint.pt", "tiny-a", tmp_path / "w", {"training_data": "noise"})
    cfg = T.TrainConfig(data=["d"], patch=16, batch=2, steps=4, threads=1, mask_threshold=120.0,
                        lr_space="ycc", init_from=str(tmp_path / "w" / a["file"]))
    T.train(fc, cfg, tmp_path / "b", log=lambda m: None)
    b = weights.export(tmp_path / "b" / "checkpoint.pt", "tiny-b", tmp_path / "w", {"training_data": "noise"})
    assert weights.default_model(2) == "tiny-b"
    assert weights.load_model("tiny-b", expect_hash=bytes.fromhex(b["sha256"])[:8]).config.width == 8
    assert b["init_from_model"] == "tiny-a"
    # the trained mask threshold is the encoder's default for the model
    a_card, b_card = weights.card("tiny-a"), weights.card("tiny-b")
    assert (a_card.defaults.threshold, b_card.defaults.threshold) == (50.0, 120.0)
    # and so is its LR colour space
    assert (a_card.defaults.lr_space, b_card.defaults.lr_space) == ("rgb", "ycc")
    assert b["cpu_hours_total"] == pytest.approx(a["cpu_hours"] + b["cpu_hours"], abs=2e-3)
    (tmp_path / "w" / b["file"]).write_bytes(b"not the exported weights")
    weights._load.cache_clear()
    with pytest.raises(WeightsError, match="SHA-256"):
        weights.load_model("tiny-b")


def test_a_measured_mask_threshold_overrides_the_training_one(monkeypatch):
    """A manifest entry's own mask_threshold (measured better than the training
    value) is the encoder's default for the model."""
    name = weights.default_model(4)
    real = weights.manifest()

    def patched(folder=None):
        out = {k: dict(v) for k, v in real.items()}
        out[name]["mask_threshold"] = 65535.0
        return out
    monkeypatch.setattr(weights, "manifest", patched)
    assert weights.card(name).defaults.threshold == 65535.0


def _ranged_defaults(scale=2):
    """The scale's default decoders for ranges of AVIF LR qualities, with their ranges."""
    ranged = [(n, e["lr_qualities"]) for n, e in weights.manifest().items()
              if e.get("scale") == scale and e.get("default") and "lr_qualities" in e]
    assert ranged
    return ranged


def test_defaults_for_lr_quality_ranges_cover_their_ranges_only():
    """x2 has default decoders for ranges of AVIF LR qualities (lr_qualities
    in their entries), which do not overlap; the plain default covers every
    other quality and the lossless LR."""
    ranged = _ranged_defaults(2)
    plain = weights.default_model(2, "avif")
    assert "lr_qualities" not in weights.entry(plain)
    for q in range(0, 101):
        covering = [n for n, (lo, hi) in ranged if lo <= q <= hi]
        assert len(covering) <= 1, (q, covering)
        assert weights.default_model(2, "avif", q) == (covering[0] if covering else plain), q
    b = weights.load_model(plain)
    for name, (lo, hi) in ranged:
        assert name != plain and weights.default_model(2, "lossless", lo) != name
        # it decodes the plain default's files: the same flow, so the same LR
        a = weights.load_model(name)
        flow = {k: v for k, v in a.state_dict().items() if not k.startswith("head.")}
        assert all(torch_equal(v, b.state_dict()[k]) for k, v in flow.items())


def test_overlapping_lr_quality_ranges_are_a_weights_error(monkeypatch):
    name, (lo, hi) = _ranged_defaults(2)[0]
    real = weights.manifest()
    plain = weights.default_model(2, "avif")

    def patched(folder=None):
        out = {k: dict(v) for k, v in real.items()}
        out[plain]["lr_qualities"] = [hi, 100]
        return out
    monkeypatch.setattr(weights, "manifest", patched)
    with pytest.raises(WeightsError, match="overlap"):
        weights.default_model(2, "avif", hi)


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_a_bad_lr_quality_range_is_a_weights_error(monkeypatch):
    name, _ = _ranged_defaults(2)[0]
    real = weights.manifest()

    def patched(folder=None):
        out = {k: dict(v) for k, v in real.items()}
        out[name]["lr_qualities"] = "low"
        return out
    monkeypatch.setattr(weights, "manifest", patched)
    with pytest.raises(WeightsError, match="lr_qualities"):
        weights.default_model(2, "avif", 20)


def test_a_head_trained_later_keeps_the_flow_forward():
    """x2-avif-v12 is x2-avif-v11's flow with a retrained head, so a target
    search reuses v11's Y for it; a flow trained further is not the same."""
    v11, v12 = weights.load_model("rescodec-x2-avif-v11"), weights.load_model("rescodec-x2-avif-v12")
    assert v11.same_forward_levels(v12)
    assert not v11.same_forward_levels(weights.load_model("rescodec-x2-avif-v1"))
    assert not v11.same_forward_levels(weights.load_model("rescodec-x4-avif-v4"))


def test_export_is_all_or_nothing_and_keeps_installed_models(tmp_path, monkeypatch):
    """A bad name, an installed name (files made with it would no longer
    decode), a folder with no images to validate on, or a failure half-way
    leave the weights folder as it was; a model of no steps is refused."""
    import numpy as np
    from rescodec.training import train as T
    from rescodec.flow import FlowConfig
    w = tmp_path / "w"
    monkeypatch.setenv("RESCODEC_WEIGHTS", str(w))
    monkeypatch.setattr(T, "list_images", lambda folders: ["x"] if folders and "empty" not in str(folders) else [])
    monkeypatch.setattr(T, "load_rgb", lambda p: np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8))
    fc = FlowConfig(scale=2, width=8, blocks_per_level=1)
    T.train(fc, T.TrainConfig(data=["d"], patch=16, batch=2, steps=2, threads=1), tmp_path / "a",
            log=lambda m: None)
    T.export_run(tmp_path / "a", "tiny-a", None)
    before = {p.name: p.read_bytes() for p in w.iterdir()}
    for name, said in (("Bad Name", "invalid model name"), ("../out", "invalid model name"),
                       ("tiny-a", "a model named tiny-a is installed")):
        with pytest.raises(ValueError, match=said):
            T.export_run(tmp_path / "a", name, None)
    with pytest.raises(ValueError, match="no images to validate on"):
        T.export_run(tmp_path / "a", "tiny-b", tmp_path / "empty")
    with pytest.raises(ValueError, match="no checkpoint.pt"):
        T.export_run(tmp_path / "none", "tiny-b", None)
    monkeypatch.setattr(T, "measure_validation", lambda *a: 1 / 0)   # fails after the weights are written
    with pytest.raises(ZeroDivisionError):
        T.export_run(tmp_path / "a", "tiny-b", tmp_path / "val")
    assert {p.name: p.read_bytes() for p in w.iterdir()} == before and weights.default_model(2) == "tiny-a"
    T.export_run(tmp_path / "a", "tiny-a", None, replace=True)   # --force
    import torch
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    (tmp_path / "z").mkdir()
    torch.save({**state, "step": 0}, tmp_path / "z" / "checkpoint.pt")   # saved before its first step
    with pytest.raises(ValueError, match="is at step 0: train it first"):
        T.export_run(tmp_path / "z", "tiny-z", None)
    assert "tiny-z" not in weights.manifest()
    for content in (b"", b"garbage\n"):   # an empty file was "interrupted", exit 130
        (tmp_path / "z" / "checkpoint.pt").write_bytes(content)
        with pytest.raises(ValueError, match="not a training checkpoint"):
            T.export_run(tmp_path / "z", "tiny-z", None)


def test_loading_a_model_leaves_torchs_random_state_alone():
    """Building the network drew its random initial weights from torch's
    global generator, so a caller's torch.manual_seed sequence changed on
    the first decode of each model (and again after the cache let it go)."""
    import torch
    weights._load.cache_clear()
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    weights.load_model("rescodec-x2-avif-v12")
    assert torch.equal(torch.rand(3), want)

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

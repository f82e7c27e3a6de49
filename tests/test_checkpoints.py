"""Verified checkpoints: the weights, their JSON sidecar, and every way a file is refused."""

import json

import numpy as np
import pytest
import torch

from freqbackdoor.errors import DataError
from freqbackdoor.io import sha256_file
from freqbackdoor.models import checkpoints
from freqbackdoor.models.checkpoints import load_checkpoint, save_checkpoint
from freqbackdoor.models.classifier import build_model, count_parameters
from freqbackdoor.models.prediction import predict_logits


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("reference_cnn", 10, 32, seed=1)
    path, sidecar = tmp_path / "model.pt", tmp_path / "model.json"
    save_checkpoint(model, path, sidecar, {"seed": 1, "metrics": {"test_acc": 0.5}})
    return model, path, sidecar


def test_checkpoint_round_trip(checkpoint, images32):
    model, path, sidecar = checkpoint
    meta = json.loads(sidecar.read_text())
    assert meta["architecture"] == "reference_cnn" and meta["domain"] == "pixel"
    assert (meta["num_classes"], meta["input_size"]) == (10, 32)
    assert meta["parameters"] == count_parameters(model) == 307_498 + 896  # Table 8 + BatchNorm
    assert meta["checkpoint"] == "model.pt" and len(meta["sha256"]) == 64
    assert meta["metrics"]["test_acc"] == 0.5 and meta["seed"] == 1
    assert not list(path.parent.glob(".*tmp*"))
    loaded, loaded_meta = load_checkpoint(path, sidecar, device="cpu")
    assert loaded_meta == meta and not loaded.training
    _assert_same_state(model, loaded)
    np.testing.assert_array_equal(
        predict_logits(model, images32, "cpu"), predict_logits(loaded, images32, "cpu")
    )


def test_load_uses_weights_only(checkpoint, monkeypatch):
    _, path, sidecar = checkpoint
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", spy)
    load_checkpoint(path, sidecar)
    assert seen == [True]


def test_a_checkpoint_copied_over_another_is_refused_naming_the_field(checkpoint):
    """Its own sha256 and shapes agree; what the path and config expect does not."""
    _, path, sidecar = checkpoint
    other, other_sidecar = path.with_name("other.pt"), sidecar.with_name("other.json")
    other.write_bytes(path.read_bytes())
    other_sidecar.write_text(sidecar.read_text())
    load_checkpoint(other, other_sidecar)  # nothing expected: nothing to contradict
    with pytest.raises(DataError) as info:
        load_checkpoint(other, other_sidecar, expect={"checkpoint": "other.pt"})
    assert "other.json: checkpoint is 'model.pt' but this path and the config expect 'other.pt'" in str(info.value)  # fmt: skip
    with pytest.raises(DataError, match="seed is 1 but .* expect 2"):
        load_checkpoint(path, sidecar, expect={"checkpoint": "model.pt", "seed": 2})
    load_checkpoint(path, sidecar, expect={"checkpoint": "model.pt", "seed": 1})


def test_tampered_checkpoint_is_refused(checkpoint):
    _, path, sidecar = checkpoint
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256") as info:
        load_checkpoint(path, sidecar)
    assert str(path) in str(info.value)


def test_sidecar_with_wrong_classes_names_the_layer(checkpoint):
    _, path, sidecar = checkpoint
    meta = json.loads(sidecar.read_text())
    meta["num_classes"] = 5
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError) as info:
        load_checkpoint(path, sidecar)
    message = str(info.value)
    assert str(path) in message
    assert "classifier.weight has shape (10, 2048)" in message and "(5, 2048)" in message


def test_checkpoint_with_foreign_keys_is_refused(tmp_path):
    model = build_model("reference_cnn", 2, 16, seed=0)
    path, sidecar = tmp_path / "m.pt", tmp_path / "m.json"
    save_checkpoint(model, path, sidecar)
    state = model.state_dict()
    state["extra.weight"] = state.pop("classifier.weight")
    torch.save(state, path)
    meta = json.loads(sidecar.read_text())
    meta["sha256"] = sha256_file(path)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="lacks classifier.weight and has unexpected extra.weight"):
        load_checkpoint(path, sidecar)


def test_bad_sidecars(checkpoint, tmp_path):
    model, path, sidecar = checkpoint
    with pytest.raises(DataError, match="missing.json"):
        load_checkpoint(path, tmp_path / "missing.json")
    meta = json.loads(sidecar.read_text())
    meta["architecture"] = "vgg"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="vgg"):
        load_checkpoint(path, sidecar)
    with pytest.raises(ValueError, match="sha256"):
        save_checkpoint(model, path, sidecar, {"sha256": "x"})


def test_checkpoint_keeps_model_options(tmp_path):
    model = build_model("reference_cnn", 3, 64, seed=2, downsample=2)
    path, sidecar = tmp_path / "m.pt", tmp_path / "m.json"
    save_checkpoint(model, path, sidecar)
    loaded, meta = load_checkpoint(path, sidecar)
    assert meta["model_options"] == {"downsample": 2} and loaded.downsample == 2
    _assert_same_state(model, loaded)

"""Safe weight files: safetensors round trip, refusal of pickled objects."""

import os
import pickle

import pytest
import torch

from analysis.engine.builder import (
    WeightsError,
    build_model,
    load_weights,
    save_weights,
    set_seed,
    sha256_of_file,
)
from tests.analysis.engine_helpers import MLP, TINY_CNN


class _CreatesMarker:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_safetensors_round_trip(tmp_path):
    set_seed(0)
    model = build_model(TINY_CNN)
    path = tmp_path / "weights.safetensors"
    save_weights(model, path)
    set_seed(1)
    other = load_weights(build_model(TINY_CNN), path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])
    assert len(sha256_of_file(path)) == 64


def test_tensor_only_pt_file_loads(tmp_path):
    model = build_model(MLP)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = load_weights(build_model(MLP), path)
    assert torch.equal(loaded.fc1.weight, model.fc1.weight)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_even_when_forced(tmp_path, monkeypatch, writer):
    # Given a weights file whose unpickling would create a marker file
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    payload = {"fc1.weight": _CreatesMarker(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    # When it is loaded
    with pytest.raises(WeightsError, match="refusing to load pickled objects"):
        load_weights(build_model(MLP), path)
    # Then the payload never ran
    assert not marker.exists()


def test_mismatching_weights_are_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_weights(build_model(MLP), path)
    with pytest.raises(WeightsError, match="do not fit this model"):
        load_weights(build_model(TINY_CNN), path)


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported weights format '.bin'"):
        load_weights(build_model(MLP), tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError):
        load_weights(build_model(MLP), tmp_path / "absent.safetensors")

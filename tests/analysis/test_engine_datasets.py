"""Procedural shapes, bundled digits, IDX files and the dataset registry."""

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import tests.analysis.engine_helpers  # noqa: F401  (one torch thread)
from analysis.engine.datasets import (
    DATASET_NAMES,
    DEFAULT_FASHION_MNIST_PATH,
    FASHION_MNIST_CLASSES,
    SHAPE_CLASSES,
    DatasetUnavailable,
    load_dataset,
    load_digits_dataset,
    load_idx_dataset,
    make_shapes_dataset,
)
from analysis.engine.run_settings import DATASET_CONCEPTS
from tests.services import require_service


def _write_idx(path: Path, array: np.ndarray, gzipped: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def test_shapes_are_bitwise_reproducible_and_seed_dependent():
    first = make_shapes_dataset(64, seed=1)
    second = make_shapes_dataset(64, seed=1)
    other = make_shapes_dataset(64, seed=2)
    assert torch.equal(first.inputs, second.inputs)
    assert torch.equal(first.labels, second.labels)
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint != other.fingerprint


def test_shapes_layout_classes_and_attributes():
    dataset = make_shapes_dataset(200, seed=0, size=20)
    assert dataset.inputs.shape == (200, 1, 20, 20)
    assert dataset.inputs.dtype == torch.float32
    assert float(dataset.inputs.min()) >= 0.0 and float(dataset.inputs.max()) <= 1.0
    assert dataset.class_names == SHAPE_CLASSES
    assert torch.bincount(dataset.labels).tolist() == [50, 50, 50, 50]
    curvature = dataset.attributes["curvature"]
    straight = (dataset.labels == 0) | (dataset.labels == 3)
    assert torch.all(curvature[straight] == 0)
    assert torch.all(curvature[~straight] > 0)
    assert set(dataset.attributes) == {"curvature", "orientation"}


def test_shapes_render_fast():
    started = time.perf_counter()
    make_shapes_dataset(2000, seed=0)
    assert time.perf_counter() - started < 2.0


def test_split_is_deterministic_and_disjoint():
    dataset = make_shapes_dataset(50, seed=0)
    train, test = dataset.split(0.2, seed=3)
    train_again, _ = dataset.split(0.2, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert torch.equal(train.inputs, train_again.inputs)
    rows = {bytes(x.numpy()) for x in train.inputs} & {bytes(x.numpy()) for x in test.inputs}
    assert rows == set()


def test_digits_are_scaled_to_unit_range():
    dataset = load_digits_dataset()
    assert dataset.inputs.shape == (1797, 1, 8, 8)
    assert float(dataset.inputs.max()) == 1.0
    assert dataset.class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_loader_reads_tiny_files(tmp_path, gzipped):
    images = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, gzipped)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([2, 0, 1]), gzipped)
    dataset = load_idx_dataset(tmp_path, split="test", limit=2)
    assert dataset.inputs.shape == (2, 1, 4, 5)
    assert dataset.labels.tolist() == [2, 0]
    assert torch.allclose(dataset.inputs[0, 0], torch.from_numpy(images[0] / 255.0).float())


def test_idx_loader_names_the_missing_path(tmp_path):
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "missing")):
        load_idx_dataset(tmp_path / "missing")
    with pytest.raises(DatasetUnavailable, match="train-images-idx3-ubyte"):
        load_idx_dataset(tmp_path)


def test_fashion_mnist_from_debian_files():
    require_service(
        "Fashion-MNIST",
        Path(DEFAULT_FASHION_MNIST_PATH).is_dir(),
        f"not installed at {DEFAULT_FASHION_MNIST_PATH} (apt-get install dataset-fashion-mnist)",
    )
    dataset = load_dataset("fashion-mnist", limit=100)
    assert dataset.inputs.shape == (100, 1, 28, 28)
    assert len(dataset.class_names) == 10


def test_registry_loads_by_name_and_rejects_unknown_options():
    assert DATASET_NAMES == ("shapes", "digits", "fashion-mnist")
    assert len(load_dataset("shapes", n=12, seed=0, size=16)) == 12
    assert len(load_dataset("digits", limit=30)) == 30
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("shapes", colour="red")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


def test_each_dataset_carries_the_concepts_the_run_settings_accept():
    # Concepts are checked before a run exists, against run_settings' names; a name the data
    # lacked would surface in a worker as a KeyError.
    shapes = make_shapes_dataset(4, seed=0, size=8)
    assert (*shapes.class_names, *shapes.attributes) == DATASET_CONCEPTS["shapes"]
    assert tuple(load_digits_dataset(limit=20).class_names) == DATASET_CONCEPTS["digits"]
    assert tuple(FASHION_MNIST_CLASSES) == DATASET_CONCEPTS["fashion-mnist"]

"""In-memory labelled image datasets: procedural shapes, sklearn digits and IDX files."""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.engine.run_settings import DATASET_CLASSES, DATASET_NAMES

# The names live with the run settings' rules (torch-free), which check concepts against them.
SHAPE_CLASSES = list(DATASET_CLASSES["shapes"])
FASHION_MNIST_CLASSES = list(DATASET_CLASSES["fashion-mnist"])
DEFAULT_FASHION_MNIST_PATH = "/usr/share/datasets/fashion-mnist"


class DatasetUnavailable(FileNotFoundError):
    """The files a dataset needs are not on this machine."""


def fingerprint_tensors(*tensors: torch.Tensor) -> str:
    """Out: hex sha256 over the raw bytes of the tensors (in order), identifying the data."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class ArrayDataset:
    """Labelled examples held in memory.

    inputs: float32 [N, C, H, W] or [N, F]; labels: int64 [N]; attributes: name -> float32 [N]
    continuous per-example properties (e.g. curvature); fingerprint: sha256 of the inputs and
    labels bytes (computed when left empty).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    name: str = "dataset"
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")
        if not self.fingerprint:
            self.fingerprint = fingerprint_tensors(self.inputs, self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> list[int]:
        """Out: the shape of one example, e.g. [1, 28, 28]."""
        return list(self.inputs.shape[1:])

    def subset(self, indices: torch.Tensor, suffix: str) -> ArrayDataset:
        """In: int64 indices [M]. Out: a new dataset with those examples (same order).

        Its fingerprint hashes the parent's fingerprint with the indices, which identifies the
        data as well as hashing the copied bytes would, without reading them again.
        """
        digest = hashlib.sha256(f"{self.fingerprint}/{suffix}:".encode())
        digest.update(indices.cpu().numpy().astype(np.int64).tobytes())
        return ArrayDataset(
            inputs=self.inputs[indices],
            labels=self.labels[indices],
            attributes={key: value[indices] for key, value in self.attributes.items()},
            class_names=list(self.class_names),
            name=f"{self.name}/{suffix}",
            fingerprint=digest.hexdigest(),
        )

    def split(self, test_fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
        """Randomly split into (train, test); deterministic for a seed.

        In: test_fraction in (0, 1), seed. Out: two datasets, test holding round(N * fraction)
        examples (at least one each).
        """
        if not 0 < test_fraction < 1 or len(self) < 2:
            raise ValueError(f"cannot split {len(self)} examples with fraction {test_fraction}")
        n_test = min(max(1, round(len(self) * test_fraction)), len(self) - 1)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator)
        return self.subset(order[n_test:], "train"), self.subset(order[:n_test], "test")


# ---------------------------------------------------------------------------------------------
# Procedural shapes
# ---------------------------------------------------------------------------------------------


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance of every pixel to the segment (x0, y0)-(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))


def _arc_distance(px, py, cx, cy, radius, mid_angle, half_span):
    """Distance of every pixel to a circular arc centred on mid_angle spanning ±half_span."""
    angle = np.arctan2(py - cy, px - cx)
    offset = np.abs((angle - mid_angle + np.pi) % (2 * np.pi) - np.pi)
    on_arc = np.abs(np.hypot(px - cx, py - cy) - radius)
    ends = [
        (
            cx + radius * math.cos(mid_angle + s * half_span),
            cy + radius * math.sin(mid_angle + s * half_span),
        )
        for s in (-1, 1)
    ]
    to_end = np.minimum(*(np.hypot(px - ex, py - ey) for ex, ey in ends))
    return np.where(offset <= half_span, on_arc, to_end)


def _draw_line(rng, px, py, size):
    theta = rng.uniform(0, np.pi)
    half = rng.uniform(0.25, 0.42) * size
    cx, cy = rng.uniform(0.35, 0.65, size=2) * size
    dx, dy = half * math.cos(theta), half * math.sin(theta)
    return _segment_distance(px, py, cx - dx, cy - dy, cx + dx, cy + dy), 0.0, theta


def _draw_arc(rng, px, py, size):
    radius = rng.uniform(0.3, 1.2) * size
    arc_length = rng.uniform(0.5, 0.8) * size
    half_span = min(arc_length / (2 * radius), 0.8 * np.pi)
    mid_angle = rng.uniform(0, 2 * np.pi)
    # Place the arc's midpoint near the image centre; its circle centre may lie outside.
    mx, my = rng.uniform(0.4, 0.6, size=2) * size
    cx, cy = mx - radius * math.cos(mid_angle), my - radius * math.sin(mid_angle)
    distance = _arc_distance(px, py, cx, cy, radius, mid_angle, half_span)
    return distance, 1.0 / radius, (mid_angle + np.pi / 2) % np.pi


def _draw_circle(rng, px, py, size):
    radius = rng.uniform(0.15, 0.32) * size
    cx, cy = rng.uniform(0.5 - 0.45 + radius / size, 0.5 + 0.45 - radius / size, size=2) * size
    return np.abs(np.hypot(px - cx, py - cy) - radius), 1.0 / radius, 0.0


def _draw_corner(rng, px, py, size):
    bisector = rng.uniform(0, 2 * np.pi)
    opening = rng.uniform(np.pi / 3, 2 * np.pi / 3)
    arm = rng.uniform(0.3, 0.45) * size
    vx, vy = rng.uniform(0.3, 0.7, size=2) * size
    distances = [
        _segment_distance(
            px, py, vx, vy, vx + arm * math.cos(direction), vy + arm * math.sin(direction)
        )
        for direction in (bisector - opening / 2, bisector + opening / 2)
    ]
    return np.minimum(*distances), 0.0, bisector % (2 * np.pi)


_DRAWERS = (_draw_line, _draw_arc, _draw_circle, _draw_corner)


def make_shapes_dataset(n: int, *, seed: int, size: int = 28, noise: float = 0.1) -> ArrayDataset:
    """Render n images of lines, arcs, circles and corners (balanced classes).

    Shapes vary in position, orientation, thickness and (for arcs/circles) radius; Gaussian
    pixel noise with std `noise` is added and values clipped to [0, 1]. Bitwise identical for a
    seed. Out: inputs float32 [n, 1, size, size], labels [n], attributes "curvature"
    (1/radius in 1/pixels; 0 for lines and corners) and "orientation" (radians; 0 for circles).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    py, px = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    images = np.empty((n, size, size), dtype=np.float32)
    curvature = np.empty(n, dtype=np.float32)
    orientation = np.empty(n, dtype=np.float32)
    for index, label in enumerate(labels):
        distance, curvature[index], orientation[index] = _DRAWERS[label](rng, px, py, size)
        half_thickness = rng.uniform(0.5, 1.3)
        # A one-pixel linear falloff gives anti-aliased strokes.
        images[index] = np.clip(half_thickness + 0.5 - distance, 0.0, 1.0)
    images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return ArrayDataset(
        inputs=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        attributes={
            "curvature": torch.from_numpy(curvature),
            "orientation": torch.from_numpy(orientation),
        },
        class_names=list(SHAPE_CLASSES),
        name=f"shapes(n={n},seed={seed},size={size},noise={noise})",
    )


# ---------------------------------------------------------------------------------------------
# Bundled and file-based datasets
# ---------------------------------------------------------------------------------------------


def load_digits_dataset(limit: int | None = None) -> ArrayDataset:
    """sklearn's bundled 8x8 digits. Out: inputs float32 [N, 1, 8, 8] in [0, 1], labels [N]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ArrayDataset(
        inputs=images,
        labels=labels,
        class_names=list(DATASET_CLASSES["digits"]),
        name="digits" if limit is None else f"digits(limit={limit})",
    )


def _find_idx_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetUnavailable(f"IDX file {stem}[.gz] not found in {directory}")


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes. Out: uint8 array of its dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != math.prod(dims):
        raise ValueError(f"{path}: expected {math.prod(dims)} values, found {payload.size}")
    return payload.reshape(dims)


def load_idx_dataset(
    directory: str | Path,
    *,
    split: str = "train",
    limit: int | None = None,
    class_names: list[str] | None = None,
    name: str | None = None,
) -> ArrayDataset:
    """Load MNIST-format IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).

    In: the directory, split "train" or "test", optional example limit. Out: inputs float32
    [N, 1, H, W] in [0, 1], labels [N]. Raises DatasetUnavailable naming the missing path.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetUnavailable(f"dataset directory not found: {directory}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx_file(directory, f"{prefix}-images-idx3-ubyte"))[:limit]
    labels = read_idx(_find_idx_file(directory, f"{prefix}-labels-idx1-ubyte"))[:limit]
    n_classes = int(labels.max()) + 1 if labels.size else 0
    return ArrayDataset(
        inputs=torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=class_names or [str(index) for index in range(n_classes)],
        name=name or f"idx:{directory.name}/{split}",
    )


def _take_options(name: str, options: dict, allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)}")
    return {**allowed, **options}


def load_dataset(name: str, **options: Any) -> ArrayDataset:
    """Load a dataset by registry name (see DATASET_NAMES).

    Options: shapes: n=2000, seed=0, size=28, noise=0.1; digits: limit=None;
    fashion-mnist: path, split="train", limit=None. Out: an ArrayDataset.
    """
    if name == "shapes":
        opts = _take_options(name, options, {"n": 2000, "seed": 0, "size": 28, "noise": 0.1})
        return make_shapes_dataset(
            opts["n"], seed=opts["seed"], size=opts["size"], noise=opts["noise"]
        )
    if name == "digits":
        return load_digits_dataset(**_take_options(name, options, {"limit": None}))
    if name == "fashion-mnist":
        defaults = {"path": DEFAULT_FASHION_MNIST_PATH, "split": "train", "limit": None}
        opts = _take_options(name, options, defaults)
        return load_idx_dataset(
            opts["path"],
            split=opts["split"],
            limit=opts["limit"],
            class_names=list(FASHION_MNIST_CLASSES),
            name=f"fashion-mnist/{opts['split']}",
        )
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")

"""Build torch modules from specs; seeding, device choice and safe weight files."""

from __future__ import annotations

import functools
import hashlib
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from analysis.engine.specs import LayerShape, validate_spec

SAFE_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth")


class WeightsError(ValueError):
    """A weights file is unsupported, unsafe, or does not fit the model."""


def set_seed(seed: int) -> None:
    """Seed python's random, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@functools.cache
def select_device() -> torch.device:
    """Out: cuda when available, else cpu. Chosen once per process and cached."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _make_module(layer: dict, shape: LayerShape) -> nn.Module:
    layer_type = layer["type"]
    in_width = shape.input_shape[0]
    if layer_type == "conv2d":
        return nn.Conv2d(
            in_width,
            layer["out_channels"],
            layer["kernel_size"],
            stride=layer.get("stride", 1),
            padding=layer.get("padding", 0),
        )
    if layer_type == "linear":
        return nn.Linear(in_width, layer["out_features"])
    if layer_type == "maxpool2d":
        return nn.MaxPool2d(layer["kernel_size"], stride=layer.get("stride"))
    if layer_type == "avgpool2d":
        return nn.AvgPool2d(layer["kernel_size"], stride=layer.get("stride"))
    if layer_type == "batchnorm":
        return nn.BatchNorm2d(in_width) if len(shape.input_shape) == 3 else nn.BatchNorm1d(in_width)
    if layer_type == "dropout":
        return nn.Dropout(layer.get("p", 0.5))
    simple = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "flatten": nn.Flatten}
    return simple[layer_type]()


def build_model(spec: dict) -> nn.Sequential:
    """Build the spec as an nn.Sequential whose submodule names are the spec's layer names.

    In: a valid spec. Out: a module mapping [N, *input_shape] inputs to [N, num_classes]
    logits. Raises SpecError for invalid specs. Initialisation uses torch's global RNG, so
    call set_seed() first for reproducible weights.
    """
    shapes = validate_spec(spec)
    modules = OrderedDict(
        (layer["name"], _make_module(layer, shape))
        for layer, shape in zip(spec["layers"], shapes, strict=True)
    )
    return nn.Sequential(modules)


def sha256_of_file(path: str | Path) -> str:
    """Out: hex sha256 digest of the file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the model's state_dict (parameters and buffers) as a .safetensors file."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(path))


def _read_torch_file(path: Path) -> dict:
    # weights_only=True is passed explicitly on purpose: torch only lets the
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD variable turn the restricted unpickler off when the
    # caller left weights_only unset, so arbitrary pickled objects stay refused.
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{path.name}: refusing to load pickled objects other than plain tensors; "
            "save weights as .safetensors instead"
        ) from error
    except (RuntimeError, EOFError, ValueError) as error:
        raise WeightsError(f"{path.name}: not a readable torch weights file ({error})") from error


def _read_state(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own untyped errors
            raise WeightsError(f"{path.name}: not a valid safetensors file ({error})") from error
    if suffix in TORCH_SUFFIXES:
        return _read_torch_file(path)
    raise WeightsError(
        f"{path.name}: unsupported weights format {suffix!r}; use .safetensors, .pt or .pth"
    )


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict from .safetensors (preferred) or a tensors-only .pt/.pth file.

    In: a model built from the matching spec, a file path. Out: the same model, loaded.
    Raises FileNotFoundError when absent, WeightsError for unsafe or mismatching files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = _read_state(path)
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise WeightsError(f"{path.name}: expected a mapping of names to tensors (a state_dict)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{path.name}: weights do not fit this model: {error}") from error
    return model

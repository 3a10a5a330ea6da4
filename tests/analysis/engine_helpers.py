"""Shared tiny specs and builders for the engine tests (no Django)."""

import copy
from collections import OrderedDict

import torch

from analysis.engine.runtime import configure_cpu_runtime

# Set up as a worker is: two threads are many times slower than one on the two-core test
# machines, and unmapping freed feature maps makes every batch page-fault them back in.
configure_cpu_runtime(threads=1)

TINY_CNN = {
    "input_shape": [1, 12, 12],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv2", "type": "conv2d", "out_channels": 6, "kernel_size": 3},
        {"name": "relu2", "type": "relu"},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 16},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
    "hyperparameters": {"learning_rate": 0.01, "optimizer": "adam", "epochs": 1, "batch_size": 32},
}

EXAMPLE_SPEC = {
    "input_shape": [1, 28, 28],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "bn1", "type": "batchnorm"},
        {"name": "drop1", "type": "dropout", "p": 0.1},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 32},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
    "hyperparameters": {
        "learning_rate": 0.01,
        "optimizer": "adam",
        "epochs": 2,
        "batch_size": 64,
        "weight_decay": 0.0,
    },
}

MLP = {
    "input_shape": [6],
    "num_classes": 3,
    "layers": [
        {"name": "fc1", "type": "linear", "out_features": 5},
        {"name": "relu1", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 3},
    ],
}


def spec_copy(spec: dict) -> dict:
    """A deep copy so tests can modify a spec freely."""
    return copy.deepcopy(spec)


def tiny_shapes(n: int = 120, seed: int = 0):
    """A small 12x12 shapes dataset matching TINY_CNN."""
    from analysis.engine.datasets import make_shapes_dataset

    return make_shapes_dataset(n, seed=seed, size=12)


PLANTED_UNIT = 3
PLANTED_CLASS = 2


# fc1 units detecting each other class, in redundant pairs, so that ablating any single one
# of them leaves the prediction intact; unit 7 responds equally to everything.
DETECTOR_PAIRS = {0: (0, 1), 1: (2, 4), 3: (5, 6)}
PLANTED_WIDTH = 8


def planted_model_and_data(n_per_class: int = 30, seed: int = 0):
    """An MLP whose fc1 unit 3 alone detects class 2, and matching data.

    Inputs are noisy one-hot class codes [N, 4]. Other classes are detected by redundant unit
    pairs (DETECTOR_PAIRS), so the model is perfectly accurate and only the planted unit's
    ablation costs accuracy (all of class 2).
    """
    from analysis.engine.datasets import ArrayDataset

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n_per_class)
    inputs = torch.nn.functional.one_hot(labels, 4).float()
    inputs += 0.01 * torch.rand(inputs.shape, generator=generator)
    model = torch.nn.Sequential(
        OrderedDict(
            [
                ("fc1", torch.nn.Linear(4, PLANTED_WIDTH)),
                ("relu1", torch.nn.ReLU()),
                ("fc_out", torch.nn.Linear(PLANTED_WIDTH, 4)),
            ]
        )
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.fc1.weight[7] = 0.5
        model.fc1.weight[PLANTED_UNIT, PLANTED_CLASS] = 2.0
        model.fc_out.weight[PLANTED_CLASS, PLANTED_UNIT] = 1.0
        for label, units in DETECTOR_PAIRS.items():
            for unit in units:
                model.fc1.weight[unit, label] = 2.0
                model.fc_out.weight[label, unit] = 1.0
    dataset = ArrayDataset(
        inputs=inputs,
        labels=labels,
        attributes={"code": inputs[:, PLANTED_CLASS].clone()},
        class_names=["a", "b", "c", "d"],
        name="planted",
    )
    return model.eval(), dataset

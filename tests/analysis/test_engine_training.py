"""Training determinism, metrics, progress reporting and evaluation."""

import torch

from analysis.engine.training import TrainConfig, evaluate, torch_threads, train_model
from tests.analysis.engine_helpers import TINY_CNN, tiny_shapes

CONFIG = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, test_fraction=0.25)


def test_training_twice_with_one_seed_is_bitwise_identical():
    dataset = tiny_shapes(120)
    first = train_model(TINY_CNN, dataset, CONFIG, seed=4)
    second = train_model(TINY_CNN, dataset, CONFIG, seed=4)
    assert first.metrics == second.metrics
    assert first.history == second.history
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key])


def test_different_seeds_give_different_models():
    dataset = tiny_shapes(120)
    first = train_model(TINY_CNN, dataset, CONFIG, seed=0)
    second = train_model(TINY_CNN, dataset, CONFIG, seed=1)
    assert not torch.equal(first.model.fc1.weight, second.model.fc1.weight)


def test_history_metrics_and_progress():
    dataset = tiny_shapes(120)
    calls = []
    result = train_model(
        TINY_CNN, dataset, CONFIG, seed=0, on_progress=lambda f, m: calls.append((f, m))
    )
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert set(result.metrics) == {"test_accuracy", "test_loss", "train_loss"}
    assert result.metrics["test_accuracy"] == result.history[-1]["test_accuracy"]
    assert [fraction for fraction, _ in calls] == [0.5, 1.0]
    assert calls[-1][1].startswith("epoch 2/2: test accuracy")
    assert result.device == "cpu" or result.device.startswith("cuda")
    assert result.seconds > 0
    assert not result.model.training


def test_final_metrics_match_a_separate_evaluation():
    dataset = tiny_shapes(120)
    result = train_model(TINY_CNN, dataset, CONFIG, seed=0)
    _, test = dataset.split(CONFIG.test_fraction, seed=CONFIG.split_seed)
    evaluation = evaluate(result.model, test)
    assert evaluation["accuracy"] == result.metrics["test_accuracy"]
    assert abs(evaluation["loss"] - result.metrics["test_loss"]) < 1e-6


def test_evaluate_restores_training_mode():
    dataset = tiny_shapes(40)
    result = train_model(TINY_CNN, dataset, CONFIG, seed=0)
    result.model.train()
    evaluate(result.model, dataset)
    assert result.model.training


def test_thread_count_is_set_and_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_config_from_spec_takes_hyperparameters():
    config = TrainConfig.from_spec(TINY_CNN, threads=1)
    assert (config.epochs, config.batch_size, config.optimizer) == (1, 32, "adam")

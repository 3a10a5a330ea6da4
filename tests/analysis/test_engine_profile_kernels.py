"""The compiled profile kernels against the torch path and against float64 sums: odd row
counts, partial sums flushed many times, bidirectional attention, NaN outputs, and the
cases the kernels do not take."""

import numba
import numpy as np
import pytest
import torch

from analysis.engine.builder import set_seed
from analysis.engine.head_profiles import HEAD_SCORES, MAX_TOKEN_CLASSES, profile_transformer
from analysis.engine.profile_kernels import (
    CHUNK_ROWS,
    FUSED_TERMS,
    compiled,
    fold_head_rows,
    fold_neuron_rows,
)
from analysis.engine.sequence_tasks import InductionTask
from analysis.engine.transformer import build_transformer
from tests.analysis.transformer_helpers import TINY_TRANSFORMER, full_pattern_scores

NEURON_FIELDS = ("mean", "variance", "maximum", "fraction_inactive", "class_means")


def _profiles(model, probe, batch_size):
    return [
        profile_transformer(model, probe, batch_size=batch_size, compiled=compiled)
        for compiled in (True, False)
    ]


def _assert_same(compiled, torch_path, atol=1e-6):
    for name, scores in torch_path.heads.items():
        for score in HEAD_SCORES:
            np.testing.assert_allclose(
                getattr(compiled.heads[name], score), getattr(scores, score), atol=atol
            )
    for name, layer in torch_path.neurons.layers.items():
        other = compiled.neurons.layers[name]
        for field in NEURON_FIELDS:
            np.testing.assert_allclose(getattr(other, field), getattr(layer, field), atol=atol)
        for attribute, values in layer.correlations.items():
            np.testing.assert_allclose(other.correlations[attribute], values, atol=atol)


@pytest.mark.parametrize("causal", [True, False])
def test_compiled_and_torch_paths_agree_with_odd_rows_and_bidirectional_attention(causal):
    """11 positions in batches of 5 sequences: 55 rows per batch (the kernel's single-row
    tail); a bidirectional model attends to every key (no masked keys)."""
    set_seed(7)
    model = build_transformer({**TINY_TRANSFORMER, "causal": causal, "act_fn": "gelu"})
    probe = InductionTask(d_vocab=6, length=11, segment=3).sample(
        17, torch.Generator().manual_seed(4)
    )
    compiled, torch_path = _profiles(model, probe, batch_size=5)
    _assert_same(compiled, torch_path)
    assert compiled.neurons.layers["blocks.1.mlp"].n == 17 * 11


@pytest.mark.parametrize("attributes", [2, 5])  # 5: design rows beyond FUSED_TERMS
def test_neuron_sums_flushed_many_times_equal_float64_sums(attributes):
    """More than CHUNK_ROWS rows of one token in a batch: its float32 partial sums move into
    the float64 sums several times, and every sum equals float64 arithmetic to 1e-6. An odd
    row count leaves a last row alone; an infinite output there stays infinite (not NaN)."""
    assert 1 + attributes != FUSED_TERMS
    rng = np.random.default_rng(0)
    rows, width = 5 * CHUNK_ROWS + 3, 9  # odd: the last row is taken alone
    output = (rng.standard_normal((rows, width)) * 2 + 30).astype(np.float32)
    output[:, 0] = np.maximum(output[:, 0] - 30, 0)  # a ReLU-like neuron, often 0
    shift = output[:CHUNK_ROWS].mean(axis=0)
    design = np.vstack([np.ones(rows), rng.standard_normal((attributes, rows))])
    design = design.astype(np.float32)
    tokens = rng.integers(0, 2, rows)  # two tokens: ~2.5 chunks' rows each
    sums = [np.zeros((1 + attributes, width)), np.zeros((2, width)), np.zeros(width)]
    positive, maximum = np.zeros(width), np.full(width, -np.inf)
    fold_neuron_rows(output, shift, design, tokens, *sums, positive, maximum)
    centred = output.astype(np.float64) - shift
    scale = np.abs(centred).sum(axis=0)
    expected = design.astype(np.float64) @ centred
    assert np.all(np.abs(sums[0] - expected) <= 1e-6 * scale)
    for token in (0, 1):
        expected = centred[tokens == token].sum(axis=0)
        assert np.all(np.abs(sums[1][token] - expected) <= 1e-6 * scale)
    np.testing.assert_allclose(sums[2], (centred**2).sum(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(positive, (output > 0).sum(axis=0))
    np.testing.assert_array_equal(maximum, output.max(axis=0))
    output[-1, 1] = np.inf
    squares, maximum = np.zeros(width), np.full(width, -np.inf)
    fold_neuron_rows(output, shift, design, tokens, np.zeros((1 + attributes, width)),
                     np.zeros((2, width)), squares, np.zeros(width), maximum)  # fmt: skip
    assert squares[1] == np.inf and maximum[1] == np.inf and np.isfinite(squares[2:]).all()


def test_a_vocabulary_beyond_the_token_classes_is_profiled_without_them_on_both_paths():
    """More tokens than MAX_TOKEN_CLASSES: the kernel gets no token per row (its sums of
    rows without a class go to a row it never reads), and both paths agree on the rest."""
    set_seed(5)
    model = build_transformer({**TINY_TRANSFORMER, "d_vocab": MAX_TOKEN_CLASSES + 1})
    probe = InductionTask(d_vocab=MAX_TOKEN_CLASSES + 1, length=8, segment=4).sample(
        2 * CHUNK_ROWS // 8 + 3, torch.Generator().manual_seed(6)
    )
    compiled, torch_path = _profiles(model, probe, batch_size=len(probe))
    assert compiled.neurons.class_names == []
    assert compiled.neurons.layers["blocks.1.mlp"].class_means.shape[0] == 0
    _assert_same(compiled, torch_path)


def test_head_kernel_scores_equal_full_pattern_scores_for_uniform_and_masked_rows():
    """Scores and patterns made here: a causal mask, one head uniform over its keys (every p
    at the mean: the reference key is the first), one sharp."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, (3, 9), generator=generator)
    scores = torch.randn(3, 2, 9, 9, generator=generator) * 4
    scores[:, 0] = 0.0  # uniform over the unmasked keys
    scores += torch.full((9, 9), float("-inf")).triu(1)
    pattern = scores.softmax(dim=-1)
    sums, counts = np.zeros((4, 2)), np.zeros(4)
    fold_head_rows(pattern.numpy(), scores.numpy(), tokens.numpy(), 4, sums, counts)
    expected = full_pattern_scores([pattern], tokens)
    for row, name in enumerate(HEAD_SCORES):
        np.testing.assert_allclose(sums[row] / counts[row], expected[name], atol=1e-6)


def test_nan_outputs_make_their_neuron_and_head_no_number_on_both_paths():
    """A NaN bias makes one neuron of the last MLP no number, and a NaN query weight one head
    of block 0 (whose NaN output then reaches everything after it)."""
    probe = InductionTask(d_vocab=6, length=12, segment=3).sample(
        9, torch.Generator().manual_seed(2)
    )
    set_seed(3)
    model = build_transformer(TINY_TRANSFORMER)
    with torch.no_grad():
        model.blocks[1].mlp.b_in[2] = float("nan")  # neuron 2 of block 1's MLP
    for profile in _profiles(model, probe, batch_size=4):
        layer = profile.neurons.layers["blocks.1.mlp"]
        for field in ("mean", "variance", "maximum", "fraction_inactive"):
            values = getattr(layer, field)
            assert np.isnan(values[2]) and np.isfinite(np.delete(values, 2)).all(), field
    with torch.no_grad():
        model.blocks[1].mlp.b_in[2] = 0.0
        model.blocks[0].attn.W_Q[1, 0, 0] = float("nan")  # head 1 of block 0
    for profile in _profiles(model, probe, batch_size=4):
        for score in HEAD_SCORES:
            values = getattr(profile.heads["blocks.0.attn"], score)
            assert np.isnan(values[1]) and np.isfinite(values[0]), score


def test_compiled_kernels_refuse_a_model_they_do_not_take():
    set_seed(3)
    model = build_transformer(TINY_TRANSFORMER).double()
    probe = InductionTask(d_vocab=6, length=12, segment=3).sample(
        4, torch.Generator().manual_seed(2)
    )
    with pytest.raises(ValueError, match="float32 on the CPU"):
        profile_transformer(model, probe, compiled=True)
    # left to choose, a float64 model is profiled by the torch path
    profile = profile_transformer(model, probe)
    assert np.isfinite(profile.heads["blocks.0.attn"].entropy).all()


def test_kernels_refuse_tokens_outside_their_tables():
    pattern = torch.full((1, 1, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fold_head_rows(pattern.numpy(), pattern.numpy(), np.array([[0, 1, 4]]), 4,
                       np.zeros((4, 1)), np.zeros(4))  # fmt: skip
    output = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="outside token_sums"):
        fold_neuron_rows(output, np.zeros(2, np.float32), np.ones((1, 3), np.float32),
                         np.array([0, -1, 1]), np.zeros((1, 2)), np.zeros((2, 2)),
                         np.zeros(2), np.zeros(2), np.zeros(2))  # fmt: skip


def test_a_kernel_without_a_writable_cache_is_compiled_in_each_process(monkeypatch, caplog):
    """numba refuses cache=True where no cache directory is writable (here: only the
    NUMBA_CACHE_DIR locator, pointed below a file); the kernel is then compiled uncached."""
    monkeypatch.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "/dev/null/numba")

    @compiled()
    def double(values):
        return values * 2

    np.testing.assert_array_equal(double(np.arange(3)), [0, 2, 4])
    assert "compiling it in each process" in caplog.text

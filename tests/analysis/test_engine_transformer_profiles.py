"""Streaming head scores and MLP neuron statistics; planted heads are found; hooks removed."""

import weakref

import numpy as np
import pytest
import torch
from torch import nn

from analysis.engine.builder import set_seed
from analysis.engine.head_profiles import (
    TransformerProfile,
    head_score_keys,
    head_score_masks,
    profile_transformer,
)
from analysis.engine.sequence_tasks import InductionTask
from analysis.engine.transformer import HookPoint, build_transformer
from tests.analysis.transformer_helpers import (
    INDUCTION_HEAD,
    PLANTED_CTX,
    PLANTED_VOCAB,
    PREVIOUS_TOKEN_HEAD,
    TINY_TRANSFORMER,
    full_pattern_scores,
    planted_induction_model,
)


def _tiny_model_and_probe(n=23, act_fn="relu"):
    set_seed(5)
    model = build_transformer({**TINY_TRANSFORMER, "act_fn": act_fn})
    # a small vocabulary so duplicates and induction targets occur often
    probe = InductionTask(d_vocab=6, length=12, segment=3).sample(
        n, torch.Generator().manual_seed(2)
    )
    return model, probe


def _captured(model, names, tokens):
    captured = {name: [] for name in names}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: captured[name].append(output.detach())
        )
        for name in names
    ]
    try:
        with torch.inference_mode():
            model.eval()(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return captured


# compiled: profile_kernels folds the batches (the CPU default); else the torch operations
BOTH_PATHS = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch"])


@BOTH_PATHS
def test_streamed_head_scores_equal_full_pattern_scores(compiled):
    model, probe = _tiny_model_and_probe()
    # uneven batches: 23 sequences in batches of 5
    profile = profile_transformer(model, probe, batch_size=5, compiled=compiled)
    names = [f"blocks.{block}.attn.hook_pattern" for block in (0, 1)]
    patterns = _captured(model, names, probe.tokens)
    for block in (0, 1):
        expected = full_pattern_scores(patterns[names[block]], probe.tokens)
        streamed = profile.heads[f"blocks.{block}.attn"]
        for score, values in expected.items():
            np.testing.assert_allclose(getattr(streamed, score), values, rtol=0, atol=1e-6)
    assert profile.n_sequences == 23


def test_head_score_keys_are_the_masks_true_entries_and_their_query_counts():
    # a 3-token vocabulary: many duplicates, runs of equal tokens, keys right before queries
    tokens = torch.randint(3, (7, 10), generator=torch.Generator().manual_seed(1))
    keys, queries = head_score_keys(tokens)
    for name, mask in head_score_masks(tokens).items():
        assert all(
            torch.equal(found, expected)
            for found, expected in zip(keys[name], mask.nonzero(as_tuple=True), strict=True)
        )
        assert queries[name].item() == mask.any(dim=-1).sum().item()


@BOTH_PATHS
@pytest.mark.parametrize("act_fn", ["relu", "gelu"])  # GELU outputs are also negative
def test_streamed_neuron_statistics_equal_full_tensor_statistics(act_fn, compiled):
    """Sums are float32 within a batch (the activations' precision) and float64 across
    batches, around a per-neuron shift: they agree with float64 statistics of the whole
    tensor to 1e-6 relative, also for a neuron whose mean dwarfs its spread (where sums of
    squares without the shift would cancel)."""
    model, probe = _tiny_model_and_probe(act_fn=act_fn)
    with torch.no_grad():
        model.blocks[1].mlp.b_in[0] += 50.0  # neuron 0: always on, mean ~50, small spread
    profile = profile_transformer(model, probe, batch_size=4, compiled=compiled)
    post = _captured(model, ["blocks.1.mlp.hook_post"], probe.tokens)["blocks.1.mlp.hook_post"]
    rows = post[0].reshape(-1, 24).double().numpy()  # [N * P, M]
    layer = profile.neurons.layers["blocks.1.mlp"]
    assert layer.n == 23 * 12 and list(profile.neurons.layers) == ["blocks.1.mlp"]
    assert rows[:, 0].mean() > 40 and rows[:, 0].var() < 1.0
    np.testing.assert_allclose(layer.mean, rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.variance, rows.var(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.maximum, rows.max(axis=0), rtol=0)
    np.testing.assert_allclose(layer.fraction_inactive, (rows <= 0).mean(axis=0))
    assert ((rows < 0).any()) == (act_fn == "gelu")
    # a class mean is its neuron's shift plus the class's mean offset from it: exact to
    # 1e-6 of the neuron's typical size (its mean absolute activation), not of the class mean
    scale = np.abs(rows).mean(axis=0)
    tokens = probe.tokens.reshape(-1).numpy()
    for token in range(6):
        expected = rows[tokens == token].mean(axis=0)
        assert np.all(np.abs(layer.class_means[token] - expected) <= 1e-6 * scale)
    assert profile.neurons.class_names[3] == "token 3"
    for attribute in ("position", "earlier_offset"):
        values = probe.attributes[attribute].reshape(-1).double().numpy()
        for unit in range(24):
            if rows[:, unit].std() > 0 and values.std() > 0:
                expected = np.corrcoef(rows[:, unit], values)[0, 1]
                found = layer.correlations[attribute][unit]
                assert found == pytest.approx(expected, abs=1e-6)
    stored = profile.to_dict()
    assert stored["neurons"]["layers"]["blocks.1.mlp"]["n"] == 23 * 12
    # a stored profile reads back as it was written
    assert TransformerProfile.from_dict(stored).to_dict() == stored


def test_a_token_absent_from_the_probe_has_no_class_mean_beyond_zero():
    model, probe = _tiny_model_and_probe()
    profile = profile_transformer(model, probe, batch_size=4)
    layer = profile.neurons.layers["blocks.1.mlp"]
    absent = [token for token in range(model.config.d_vocab) if layer.class_counts[token] == 0]
    assert absent, "the tiny probe draws from 6 of the vocabulary's tokens"
    assert not layer.class_means[absent].any()


@BOTH_PATHS
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_head_entropy_holds_for_sharp_heads_and_far_apart_scores(offset, compiled):
    """The entropy comes from scores centred on a key with large attention (the torch path:
    the largest; the kernel: the first with p >= 1 / (2P)): attention so sharp that most
    keys' p underflows, and scores in the thousands (a shared offset through the query and
    key biases), give the float64 entropy of the same patterns to 1e-6."""
    model = planted_induction_model()
    with torch.no_grad():
        model.blocks[0].attn.W_Q.mul_(20.0)  # scores far apart: most keys' p is 0
        for block in model.blocks:
            block.attn.b_Q[:, 0] += offset
            block.attn.b_K[:, 0] += offset
    probe = InductionTask(d_vocab=PLANTED_VOCAB, length=PLANTED_CTX, segment=5).sample(
        6, torch.Generator().manual_seed(3)
    )
    profile = profile_transformer(model, probe, batch_size=4, compiled=compiled)
    names = [f"blocks.{block}.attn.hook_pattern" for block in (0, 1)]
    patterns = _captured(model, names, probe.tokens)
    assert any((pattern == 0).any() for pattern in patterns[names[0]])
    for block in (0, 1):
        expected = full_pattern_scores(patterns[names[block]], probe.tokens)["entropy"]
        found = profile.heads[f"blocks.{block}.attn"].entropy
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)


def test_planted_previous_token_and_induction_heads_are_found():
    model = planted_induction_model()
    probe = InductionTask(d_vocab=PLANTED_VOCAB, length=PLANTED_CTX, segment=5).sample(
        64, torch.Generator().manual_seed(3)
    )
    profile = profile_transformer(model, probe, batch_size=16)
    previous = profile.heads["blocks.0.attn"].previous_token
    induction = profile.heads["blocks.1.attn"].induction
    assert previous[PREVIOUS_TOKEN_HEAD[1]] > 0.99
    assert induction[INDUCTION_HEAD[1]] > 0.8
    # the zero-weight heads attend uniformly: neither role
    assert previous[1] < 0.3 and induction[1] < 0.3
    assert profile.heads["blocks.0.attn"].entropy[0] < 1e-6  # one key per query
    findings = {finding["role"]: finding for finding in profile.proposed_findings()}
    assert set(findings) == {"previous_token", "induction"}
    assert findings["induction"] == {
        "role": "induction",
        "layer": "blocks.1.attn",
        "block": 1,
        "head": 0,
        "score": round(float(induction[0]), 6),
        "text": f"layer 1 head 0 is an induction head (score {induction[0]:.2f})",
    }
    assert findings["previous_token"]["text"] == (
        f"layer 0 head 0 is a previous-token head (score {previous[0]:.2f})"
    )
    assert profile.neurons is None  # attention only
    assert profile.to_dict()["heads"]["blocks.1.attn"]["induction"][0] == round(
        float(induction[0]), 6
    )


class _Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("broken activation")


def _hooks_left(model):
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, HookPoint) and (module._forward_hooks or module._forward_pre_hooks)
    ]


def test_hooks_are_removed_and_mode_restored_when_the_forward_raises():
    model, probe = _tiny_model_and_probe(4)
    model.train()
    model.blocks[1].mlp.act = _Broken()  # raises after the layer 0 pattern hook has run
    with pytest.raises(RuntimeError, match="broken activation"):
        profile_transformer(model, probe)
    assert _hooks_left(model) == []
    assert model.training
    with pytest.raises(ValueError, match="empty probe set"):
        profile_transformer(model, probe.slice(0, 0))


def test_no_attention_pattern_outlives_its_batch():
    model, probe = _tiny_model_and_probe(12)
    patterns = []
    handles = [
        block.attn.hook_pattern.register_forward_hook(
            lambda _m, _i, output: patterns.append(weakref.ref(output))
        )
        for block in model.blocks
    ]
    try:
        profile_transformer(model, probe, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    # 3 batches x 2 layers: every pattern was freed once its batch was scored
    assert len(patterns) == 6
    assert all(reference() is None for reference in patterns)


def test_statistics_taken_in_small_chunks_equal_those_taken_whole(monkeypatch):
    """Chunks of a batch (CACHE_CHUNK_VALUES, the torch path's) only order the work: with
    chunks of a few rows (an uneven last one) and of one sequence, every statistic is the
    same as with whole batches, to float32 rounding."""
    from analysis.engine import head_profiles

    model, probe = _tiny_model_and_probe()
    whole = profile_transformer(model, probe, batch_size=5, compiled=False)
    monkeypatch.setattr(head_profiles, "CACHE_CHUNK_VALUES", 7 * 24)  # 7 rows; 1 sequence
    chunked = profile_transformer(model, probe, batch_size=5, compiled=False)
    for name, scores in whole.heads.items():
        for score in ("previous_token", "induction", "duplicate_token", "entropy"):
            np.testing.assert_allclose(
                getattr(chunked.heads[name], score), getattr(scores, score), atol=1e-6
            )
    layer, other = whole.neurons.layers["blocks.1.mlp"], chunked.neurons.layers["blocks.1.mlp"]
    for field in ("mean", "variance", "maximum", "fraction_inactive", "class_means"):
        np.testing.assert_allclose(getattr(other, field), getattr(layer, field), atol=1e-6)
    for attribute, values in layer.correlations.items():
        np.testing.assert_allclose(other.correlations[attribute], values, atol=1e-6)

"""Head and neuron ablation: what is replaced, bitwise restoration, and the random control."""

import pytest
import torch

from analysis.engine.builder import set_seed
from analysis.engine.sequence_tasks import InductionTask
from analysis.engine.transformer import HookPoint, build_transformer
from analysis.engine.transformer_ablation import (
    ablate_transformer_units,
    mean_unit_outputs,
    measure_transformer_ablation,
)
from tests.analysis.transformer_helpers import (
    INDUCTION_HEAD,
    PLANTED_CTX,
    PLANTED_VOCAB,
    TINY_TRANSFORMER,
    planted_induction_model,
)


def _tiny():
    set_seed(2)
    model = build_transformer(TINY_TRANSFORMER).eval()
    probe = InductionTask(d_vocab=12, length=16, segment=4).sample(
        10, torch.Generator().manual_seed(1)
    )
    return model, probe


def _outputs(model, names, tokens):
    """Out: {name: a copy of its output} from one forward pass, through hooks registered
    here and removed after it (registered inside an ablation, they see the ablated output)."""
    seen = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: seen.__setitem__(name, output.clone())
        )
        for name in names
    ]
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _no_hooks(model):
    return all(
        not module._forward_hooks for module in model.modules() if isinstance(module, HookPoint)
    )


def test_zeroing_a_head_changes_logits_inside_the_block_and_restores_bitwise():
    model, probe = _tiny()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    before = model(probe.tokens)
    with ablate_transformer_units(model, block=0, kind="heads", units=[1]):
        ablated = model(probe.tokens)
        seen = _outputs(model, ["blocks.0.attn.hook_z", "blocks.0.hook_attn_out"], probe.tokens)
    after = model(probe.tokens)
    assert not torch.equal(before, ablated)
    assert torch.equal(before, after)
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    assert _no_hooks(model)
    # the head's output is gone: attn_out is W_O of head 0 alone plus b_O
    z = seen["blocks.0.attn.hook_z"]
    assert torch.all(z[:, :, 1] == 0) and torch.any(z[:, :, 0] != 0)
    attn = model.blocks[0].attn
    expected = torch.einsum("bpe,ed->bpd", z[:, :, 0], attn.W_O[0]) + attn.b_O
    assert torch.allclose(seen["blocks.0.hook_attn_out"], expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["heads", "neurons"])
def test_ablation_with_gradients_on_leaves_what_autograd_keeps_alone(kind):
    """In place under inference; with gradients on, a ReLU's output is kept for its
    backward, so the ablation replaces a copy and backward still runs."""
    model, probe = _tiny()
    with ablate_transformer_units(model, block=1, kind=kind, units=[0]):
        model(probe.tokens).sum().backward()
    assert model.blocks[1].mlp.W_in.grad is not None
    assert _no_hooks(model)


def test_mean_ablation_of_neurons_sets_them_to_their_probe_means():
    model, probe = _tiny()
    means = mean_unit_outputs(model, probe, block=1, kind="neurons")
    assert means.shape == (24,) and means.dtype == torch.float64
    post = "blocks.1.mlp.hook_post"
    full = _outputs(model, [post], probe.tokens)[post]
    with ablate_transformer_units(
        model, block=1, kind="neurons", units=[2, 5], mode="mean", means=means
    ):
        # registered after the ablation's hook, so it sees the replaced output
        ablated = _outputs(model, [post], probe.tokens)[post]
    assert torch.allclose(means, full.double().mean(dim=(0, 1)), atol=1e-9)
    assert torch.equal(ablated[:, :, [2, 5]], means[[2, 5]].float().expand(10, 16, 2))
    assert torch.equal(ablated[:, :, 3], full[:, :, 3])
    head_means = mean_unit_outputs(model, probe, block=0, kind="heads")
    assert head_means.shape == (2, 8)
    assert _no_hooks(model)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize(
    "units",
    [[4], [3, 4, 5], [9, 0, 1], [1, 3, 5, 7, 9, 11]],  # runs as slices; 6 runs: index_fill_
)
def test_ablated_neurons_are_replaced_and_only_they_whatever_their_runs(mode, units):
    model, probe = _tiny()
    means = mean_unit_outputs(model, probe, block=1, kind="neurons")
    post = "blocks.1.mlp.hook_post"
    expected = _outputs(model, [post], probe.tokens)[post]
    expected[:, :, units] = 0.0 if mode == "zero" else means[units].float()
    with ablate_transformer_units(
        model, block=1, kind="neurons", units=units, mode=mode, means=means
    ):
        ablated = _outputs(model, [post], probe.tokens)[post]
    assert torch.equal(ablated, expected)


def test_ablation_hooks_are_removed_when_the_forward_raises():
    model, probe = _tiny()
    too_long = torch.zeros(1, 20, dtype=torch.long)
    ablation = ablate_transformer_units(model, block=0, kind="heads", units=[0])
    with pytest.raises(ValueError, match="positions <= 16"), ablation:
        model(too_long)
    assert _no_hooks(model)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "layers"}, "kind must be one of heads, neurons"),
        ({"block": 2}, "block must be from 0 to 1"),
        ({"block": 0, "kind": "neurons"}, "block 0 has no MLP"),
        ({"units": [2]}, r"units must be from 0 to 1, got \[2\]"),
        ({"mode": "noise"}, "mode must be 'zero' or 'mean'"),
        ({"mode": "mean"}, "needs the units' means"),
    ],
)
def test_bad_ablation_requests_are_refused_and_leave_no_hook(changes, message):
    model, _probe = _tiny()
    request = {"block": 1, "kind": "heads", "units": [0], **changes}
    with pytest.raises(ValueError, match=message), ablate_transformer_units(model, **request):
        pass
    assert _no_hooks(model)


def test_ablating_the_planted_induction_head_beats_random_heads():
    model = planted_induction_model()
    probe = InductionTask(d_vocab=PLANTED_VOCAB, length=PLANTED_CTX, segment=5).sample(
        48, torch.Generator().manual_seed(4)
    )
    block, head = INDUCTION_HEAD
    result = measure_transformer_ablation(
        model, probe, block=block, kind="heads", units=[head], random_sets=3, seed=0
    )
    assert result.layer == "blocks.1.attn" and result.units == [0]
    assert result.baseline["accuracy"] > 0.7
    assert result.drop > 0.5
    # the only other head has zero weights: ablating it changes nothing
    assert result.random_sets == [[1], [1], [1]]
    assert result.random_drops == [0.0, 0.0, 0.0]
    assert result.percentile == 100.0 and result.z_score is None
    mean_mode = measure_transformer_ablation(
        model, probe, block=block, kind="heads", units=[head], mode="mean", random_sets=2
    )
    assert mean_mode.drop > 0.5 and mean_mode.to_dict()["mode"] == "mean"

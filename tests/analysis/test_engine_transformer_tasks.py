"""The procedural sequence tasks: determinism, structure and per-position attributes."""

import pytest
import torch

from analysis.engine.sequence_tasks import (
    IGNORE_TARGET,
    InductionTask,
    ModularAdditionTask,
    earlier_occurrences,
    next_token_targets,
    training_sampler,
)


def test_attributes_of_a_hand_checked_sequence():
    tokens = torch.tensor([[5, 1, 5, 2, 1, 5]])
    occurred, offset = earlier_occurrences(tokens)
    assert occurred.tolist() == [[False, False, True, False, True, True]]
    assert offset.tolist() == [[0, 0, 2, 0, 3, 3]]  # the latest earlier occurrence counts
    assert next_token_targets(tokens).tolist() == [[1, 5, 2, 1, 5, IGNORE_TARGET]]


def test_induction_batches_repeat_one_segment_at_a_random_offset_deterministically():
    task = InductionTask(d_vocab=50, length=20, segment=4)
    batch = task.sample(200, torch.Generator().manual_seed(7))
    again = task.sample(200, torch.Generator().manual_seed(7))
    assert torch.equal(batch.tokens, again.tokens) and torch.equal(batch.scored, again.scored)
    offsets = set()
    for tokens, scored in zip(batch.tokens, batch.scored, strict=True):
        # the scored predictions are segment - 1 consecutive positions b .. b + 2
        positions = scored.nonzero().flatten().tolist()
        start = positions[0]
        assert positions == [start, start + 1, start + 2]
        # ... whose tokens and next tokens (the repeat) occurred segment-wise earlier
        first = [
            begin
            for begin in range(0, start - 3)
            if torch.equal(tokens[begin : begin + 4], tokens[start : start + 4])
        ]
        assert first
        offsets.add(start - first[-1])
    assert min(offsets) >= 4 and len(offsets) > 5  # the offset varies


def test_induction_attributes_and_targets_follow_the_tokens():
    task = InductionTask(d_vocab=8, length=12, segment=3)
    batch = task.sample(5, torch.Generator().manual_seed(0))
    occurred, offset = earlier_occurrences(batch.tokens)
    assert torch.equal(batch.attributes["occurred_earlier"], occurred.float())
    assert torch.equal(batch.attributes["earlier_offset"], offset.float())
    assert batch.attributes["position"][3].tolist() == [float(p) for p in range(12)]
    assert torch.equal(batch.targets[:, :-1], batch.tokens[:, 1:])
    # every scored position's next token occurred earlier
    assert torch.all(occurred[:, 1:][batch.scored[:, :-1]])


def test_induction_task_refuses_impossible_settings():
    with pytest.raises(ValueError, match="length >= 2 \\* segment"):
        InductionTask(d_vocab=8, length=7, segment=4)


def test_modular_addition_holds_every_pair_once_and_splits_by_seed():
    task = ModularAdditionTask(p=5, train_fraction=0.4, split_seed=1)
    pairs = task.all_pairs()
    assert pairs.tokens[7].tolist() == [1, 2, 5]  # a-major: 7 = 1 * 5 + 2; "=" is token 5
    assert pairs.targets[7].tolist() == [IGNORE_TARGET, IGNORE_TARGET, 3]
    assert pairs.scored[7].tolist() == [False, False, True]
    attributes = {name: value[7].tolist() for name, value in pairs.attributes.items()}
    assert attributes == {
        "position": [0.0, 1.0, 2.0],
        "a": [1.0] * 3,
        "b": [2.0] * 3,
        "answer": [3.0] * 3,
    }
    answers = pairs.attributes["answer"][:, 0]
    assert torch.equal(answers, ((pairs.tokens[:, 0] + pairs.tokens[:, 1]) % 5).float())
    train, test = task.split()
    assert (len(train), len(test)) == (10, 15)
    seen = {tuple(row) for row in torch.cat([train.tokens, test.tokens]).tolist()}
    assert len(seen) == 25
    assert torch.equal(task.split()[0].tokens, train.tokens)
    other = ModularAdditionTask(p=5, train_fraction=0.4, split_seed=2).split()[0]
    assert not torch.equal(other.tokens, train.tokens)
    drawn = training_sampler(task)(30, torch.Generator().manual_seed(0))
    train_rows = {tuple(row) for row in train.tokens.tolist()}
    assert {tuple(row) for row in drawn.tokens.tolist()} <= train_rows

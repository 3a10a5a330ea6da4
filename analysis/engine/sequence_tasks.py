"""Procedural sequence tasks for transformers, deterministic from a seed, nothing downloaded.

- Repeated random tokens (the induction task): random tokens in which a segment of `segment`
  tokens reappears at a random later position. The offset varies, so no fixed "look k back"
  head solves it: only in-context copying (an induction head) predicts the repeat. A fixed
  offset is solved by one layer without induction (measured, see the project notes).
- Modular addition: "a b =" -> (a + b) mod p, the task whose one-layer solution was
  reverse-engineered as Fourier features.

A task yields a SequenceBatch: tokens, next-token targets, which predictions the task's
metrics score, and per-position attributes that profiling correlates units against.
Shapes: N sequences, P positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

IGNORE_TARGET = -100  # cross_entropy's ignore_index: positions with nothing to predict


@dataclass
class SequenceBatch:
    """tokens int64 [N, P]; targets int64 [N, P] (the token to predict at each position,
    IGNORE_TARGET where none is trained); scored bool [N, P] (the predictions the task's
    metrics count); attributes: name -> float32 [N, P]."""

    tokens: torch.Tensor
    targets: torch.Tensor
    scored: torch.Tensor
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def slice(self, start: int, stop: int) -> SequenceBatch:
        """Out: sequences start..stop-1 as a batch (views, no copy)."""
        return SequenceBatch(
            self.tokens[start:stop],
            self.targets[start:stop],
            self.scored[start:stop],
            {name: value[start:stop] for name, value in self.attributes.items()},
        )


def earlier_occurrences(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In: tokens [N, P]. Out: (occurred [N, P] bool: the token appeared at an earlier
    position; offset [N, P] int64: positions back to its latest earlier occurrence, 0 if none)."""
    positions = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # [N, Pq, Pk]
    earlier = torch.ones(positions, positions, dtype=torch.bool).tril(-1)
    matches = same & earlier  # [N, Pq, Pk]: k < q holds the same token
    index = torch.arange(positions)
    latest = torch.where(matches, index, -1).amax(dim=-1)  # [N, P], -1 if none
    occurred = latest >= 0
    offset = torch.where(occurred, index - latest, 0)
    return occurred, offset


def next_token_targets(tokens: torch.Tensor) -> torch.Tensor:
    """In: tokens [N, P]. Out: targets [N, P]: tokens shifted left, IGNORE_TARGET at the end."""
    targets = torch.full_like(tokens, IGNORE_TARGET)
    targets[:, :-1] = tokens[:, 1:]
    return targets


@dataclass(frozen=True)
class InductionTask:
    """Random tokens of `length` over `d_vocab`, with one segment of `segment` tokens repeated
    at a random later, non-overlapping position. Metrics score the predictions of the repeated
    tokens after its first one (predicted from positions b .. b+segment-2, where b is where
    the repeat starts): only copying from the earlier occurrence helps there."""

    d_vocab: int
    length: int
    segment: int

    def __post_init__(self) -> None:
        if self.d_vocab < 2 or self.segment < 2 or 2 * self.segment > self.length:
            raise ValueError(
                "induction task needs d_vocab >= 2, segment >= 2 and length >= 2 * segment, "
                f"got d_vocab={self.d_vocab}, length={self.length}, segment={self.segment}"
            )

    def sample(self, n: int, generator: torch.Generator) -> SequenceBatch:
        """Out: n sequences drawn with the generator (the same generator state gives the same
        batch)."""
        tokens = torch.randint(self.d_vocab, (n, self.length), generator=generator)
        first, second = self._segment_starts(n, generator)
        steps = torch.arange(self.segment)
        rows = torch.arange(n)[:, None]
        tokens[rows, second[:, None] + steps] = tokens[rows, first[:, None] + steps]
        scored = torch.zeros(n, self.length, dtype=torch.bool)
        scored[rows, second[:, None] + steps[:-1]] = True
        return SequenceBatch(tokens, next_token_targets(tokens), scored, _token_attributes(tokens))

    def _segment_starts(self, n: int, generator: torch.Generator):
        """Out: (first, second) starts [n]: 0 <= first, first + segment <= second,
        second + segment <= length, uniform over the allowed second starts."""
        latest_second = self.length - self.segment
        second = torch.randint(self.segment, latest_second + 1, (n,), generator=generator)
        room = second - self.segment + 1  # first may be 0 .. second - segment
        first = (torch.rand(n, generator=generator) * room).long().clamp_max(room - 1)
        return first, second


def _token_attributes(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    occurred, offset = earlier_occurrences(tokens)
    position = torch.arange(tokens.shape[1]).expand_as(tokens)
    return {
        "position": position.float(),
        "occurred_earlier": occurred.float(),
        "earlier_offset": offset.float(),
    }


@dataclass(frozen=True)
class ModularAdditionTask:
    """Sequences [a, b, =] over a vocabulary of p + 1 tokens (token p is "="); the prediction
    at "=" is scored against (a + b) mod p. All p * p pairs, split once by `split_seed`."""

    p: int
    train_fraction: float = 0.3
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.p < 2 or not 0 < self.train_fraction < 1:
            raise ValueError(
                f"modular addition needs p >= 2 and 0 < train_fraction < 1, got p={self.p}, "
                f"train_fraction={self.train_fraction}"
            )

    @property
    def d_vocab(self) -> int:
        """Out: p + 1 (the numbers and "=")."""
        return self.p + 1

    def all_pairs(self) -> SequenceBatch:
        """Out: every (a, b) as a batch of p * p sequences, a-major order."""
        a = torch.arange(self.p).repeat_interleave(self.p)
        b = torch.arange(self.p).repeat(self.p)
        equals = torch.full_like(a, self.p)
        tokens = torch.stack([a, b, equals], dim=1)  # [p*p, 3]
        answer = (a + b) % self.p
        targets = torch.full_like(tokens, IGNORE_TARGET)
        targets[:, 2] = answer
        scored = targets != IGNORE_TARGET
        per_position = {"a": a, "b": b, "answer": answer}
        attributes = {
            "position": torch.arange(3).expand_as(tokens).float(),
            **{
                name: value[:, None].expand_as(tokens).float()
                for name, value in per_position.items()
            },
        }
        return SequenceBatch(tokens, targets, scored, attributes)

    def split(self) -> tuple[SequenceBatch, SequenceBatch]:
        """Out: (train, test) batches, a fixed shuffle of all pairs by split_seed."""
        pairs = self.all_pairs()
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.split_seed))
        cut = max(1, min(len(order) - 1, round(self.train_fraction * len(order))))
        return _take(pairs, order[:cut]), _take(pairs, order[cut:])


def _take(batch: SequenceBatch, index: torch.Tensor) -> SequenceBatch:
    return SequenceBatch(
        batch.tokens[index],
        batch.targets[index],
        batch.scored[index],
        {name: value[index] for name, value in batch.attributes.items()},
    )


def training_sampler(
    task: InductionTask | ModularAdditionTask,
) -> Callable[[int, torch.Generator], SequenceBatch]:
    """Out: sample(n, generator) giving n training sequences: fresh draws for the induction
    task, draws with replacement from the (fixed) training split for modular addition."""
    if isinstance(task, InductionTask):
        return task.sample
    train, _test = task.split()
    return lambda n, generator: _take(train, torch.randint(len(train), (n,), generator=generator))


def make_sequence_task(settings: dict, *, d_vocab: int) -> InductionTask | ModularAdditionTask:
    """In: settings cleaned by run_settings.sequence_task_clean for a model of d_vocab tokens.
    Out: the task they describe (the induction task's held-out seed stays in the settings)."""
    if settings["name"] == "induction":
        return InductionTask(
            d_vocab=d_vocab, length=settings["length"], segment=settings["segment"]
        )
    return ModularAdditionTask(
        p=settings["p"],
        train_fraction=settings["train_fraction"],
        split_seed=settings["split_seed"],
    )

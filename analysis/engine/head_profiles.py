"""Per-head attention scores and per-neuron MLP statistics of a transformer, streamed.

Per head, over the probe sequences (means over the queries where a score is defined):
- previous-token score: attention from position q to q - 1;
- duplicate-token score: attention mass on earlier positions holding the query's token;
- induction score: attention mass on the positions just after an earlier occurrence of the
  query's token (k - 1 holds the token, k < q, so a previous-token head does not count);
- attention entropy (nats) of the query's pattern.
Each batch's patterns [B, H, P, P] are folded into per-head float64 sums inside the hook and
dropped: no L x L pattern outlives its batch. On the CPU (float32) the folding is done by the
compiled kernels of analysis.engine.profile_kernels, one pass per pattern or MLP output;
elsewhere by the torch operations below, which the tests hold the kernels to. The torch
path's entropy needs no logarithm per pattern entry: with log p = s - lse over a query's
unmasked keys (s the scores, lse their log-sum-exp), the entropy is lse - sum_k p_k s_k,
taken around each query's largest score (see _HeadScoreSums._entropy_sums). MLP neurons
(`blocks.{i}.mlp.hook_post`) get the CNN profile's statistics, one row per (sequence,
position), with the current token as the class and the task's per-position attributes,
summed in float32 within a batch (the activations' own precision) and in float64 across
batches, around a per-neuron shift and around the probe's attribute means so that no sum
cancels (agreement with float64 sums: tests/analysis/test_engine_transformer_profiles.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.engine.activations import _StreamingUnitStats, recording_hooks
from analysis.engine.profiles import ActivationProfile, _array, _jsonable
from analysis.engine.sequence_tasks import SequenceBatch
from analysis.engine.training import eval_mode
from analysis.engine.transformer import Transformer

HEAD_SCORES = ("previous_token", "induction", "duplicate_token", "entropy")
# Token classes beyond this would make the per-batch one-hot design matrix too large; larger
# vocabularies are profiled without token classes.
MAX_TOKEN_CLASSES = 256
FINDING_THRESHOLD = 0.5
# Values per chunk of a batch that the statistics take in turn, so that a chunk's several
# passes find it in the cache (1 MiB of float32). Measured on the benchmark's model against
# 64 KiB and 256 KiB chunks, which fit this machine's 512 KiB L2 but cost more in per-op
# overhead (profile / forward 1.37 vs 1.49 and 1.43, medians of 40), and 2 MiB (1.40).
CACHE_CHUNK_VALUES = 262144
# Rows whose mean shifts a neuron's sums (see _TokenRowStats.update_layer).
SHIFT_ROWS = 256
ROLE_NAMES = {
    "previous_token": "a previous-token head",
    "induction": "an induction head",
    "duplicate_token": "a duplicate-token head",
}


@dataclass
class HeadScores:
    """One attention layer's heads: each score an array [H] (see the module docstring)."""

    layer: str
    previous_token: np.ndarray
    induction: np.ndarray
    duplicate_token: np.ndarray
    entropy: np.ndarray

    def to_dict(self) -> dict[str, list]:
        """Out: {score name: [per head]} rounded as profiles are (nan as None)."""
        return {name: _jsonable(getattr(self, name)) for name in HEAD_SCORES}

    @classmethod
    def from_dict(cls, layer: str, data: dict[str, list]) -> HeadScores:
        """In: a dict made by to_dict(). Out: the scores (None read back as nan)."""
        return cls(layer, **{name: _array(data[name]) for name in HEAD_SCORES})


@dataclass
class TransformerProfile:
    """Head scores per attention layer ("blocks.{i}.attn") and, when the model has MLPs, the
    neurons' ActivationProfile (layers "blocks.{i}.mlp")."""

    heads: dict[str, HeadScores]
    neurons: ActivationProfile | None
    n_sequences: int

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict."""
        return {
            "n_sequences": self.n_sequences,
            "heads": {name: scores.to_dict() for name, scores in self.heads.items()},
            "neurons": None if self.neurons is None else self.neurons.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformerProfile:
        """In: a dict made by to_dict(). Out: the profile."""
        heads = {name: HeadScores.from_dict(name, raw) for name, raw in data["heads"].items()}
        neurons = data["neurons"]
        neurons = None if neurons is None else ActivationProfile.from_dict(neurons)
        return cls(heads, neurons, data["n_sequences"])

    def proposed_findings(self, threshold: float = FINDING_THRESHOLD) -> list[dict[str, Any]]:
        """Out: per role (previous-token, induction, duplicate-token), the best head when its
        score reaches the threshold: {"role", "layer", "block", "head", "score", "text"}, with
        text such as "layer 1 head 3 is an induction head (score 0.91)"."""
        findings = []
        for role, description in ROLE_NAMES.items():
            candidates = [
                (float(score), int(layer.split(".")[1]), head, layer)
                for layer, scores in self.heads.items()
                for head, score in enumerate(getattr(scores, role))
                if np.isfinite(score)
            ]
            if not candidates:
                continue
            # the highest score; among equal scores the earliest block and head
            score, block, head, layer = max(
                candidates, key=lambda item: (item[0], -item[1], -item[2])
            )
            if score >= threshold:
                text = f"layer {block} head {head} is {description} (score {score:.2f})"
                findings.append(
                    {"role": role, "layer": layer, "block": block, "head": head,
                     "score": round(score, 6), "text": text}
                )  # fmt: skip
        return findings


def head_score_masks(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """In: tokens [B, P]. Out: bool masks [B, Pq, Pk] marking the keys the duplicate-token
    and induction scores count for each query (the previous-token key is q - 1)."""
    positions = tokens.shape[1]
    before = torch.ones(positions, positions, dtype=torch.bool, device=tokens.device).tril(-1)
    duplicate = (tokens[:, :, None] == tokens[:, None, :]) & before  # [B, Pq, Pk]
    induction = torch.zeros_like(duplicate)
    induction[:, :, 1:] = duplicate[:, :, :-1]  # key k follows an earlier copy at k - 1
    induction &= before  # ... and lies before the query (k = q would be the previous token)
    return {"induction": induction, "duplicate_token": duplicate}


def head_score_keys(tokens: torch.Tensor):
    """The (b, q, k) indices of head_score_masks' True entries, found without building the
    induction mask: an induction key k + 1 follows each duplicate key k that lies at least
    two positions before its query (one nonzero() over [B, P, P] instead of two, and no
    any() passes: measured ~3x cheaper per batch of 64 x 64 tokens).

    In: tokens [B, P]. Out: (keys {"induction", "duplicate_token": (b, q, k) int64 index
    tensors in row-major order}, queries {name: float64 count of queries with a key})."""
    positions = tokens.shape[1]
    before = torch.ones(positions, positions, dtype=torch.bool, device=tokens.device).tril(-1)
    duplicate = (tokens[:, :, None] == tokens[:, None, :]) & before  # [B, Pq, Pk]
    b, q, k = duplicate.nonzero(as_tuple=True)
    follows = k + 1 < q
    keys = {
        "induction": (b[follows], q[follows], k[follows] + 1),
        "duplicate_token": (b, q, k),
    }
    queries = {
        # Indices come sorted by (b, q): distinct queries are distinct runs of b * P + q.
        name: torch.unique_consecutive(rows * positions + cols).numel()
        for name, (rows, cols, _) in keys.items()
    }
    return keys, {name: torch.tensor(float(count), dtype=torch.float64)
                  for name, count in queries.items()}  # fmt: skip


class _HeadScoreSums:
    """Running float64 sums of each score per head, and the number of queries scored.

    compiled: each batch is folded by profile_kernels.fold_head_rows (float32 on the CPU),
    else by torch operations: the token-matching keys are few, so their attention is gathered
    at the (b, q, k) indices head_score_keys lists rather than multiplied by whole masks; the
    previous-token score reads the pattern's first subdiagonal; the entropy takes one product
    pass over the pattern and its scores (see the module docstring), measured ~3x cheaper
    than p * log p.
    """

    def __init__(self, *, compiled: bool = False, n_vocab: int = 0) -> None:
        self.compiled, self.n_vocab = compiled, n_vocab
        self.tokens: np.ndarray | None = None  # the batch's tokens, for the compiled path
        self.tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # views of sums, counts
        self.sums: dict[str, dict[str, torch.Tensor]] = {}
        self.counts: dict[str, dict[str, torch.Tensor]] = {}
        self.keys: dict[str, tuple[torch.Tensor, ...]] = {}
        self.queries: dict[str, torch.Tensor] = {}
        self.scores_seen: dict[str, torch.Tensor] = {}
        self.product: torch.Tensor | None = None  # a reused block for p * s, a chunk's worth

    def set_tokens(self, tokens: torch.Tensor) -> None:
        """Find the keys and count the scored queries of the batch about to run."""
        if self.compiled:  # the kernel finds the keys and counts the queries itself
            self.tokens = tokens.contiguous().numpy()
            return
        batch, positions = tokens.shape
        self.keys, self.queries = head_score_keys(tokens)
        for name, count in (("previous_token", batch * max(positions - 1, 0)),
                            ("entropy", batch * positions)):  # fmt: skip
            self.queries[name] = torch.tensor(float(count), dtype=torch.float64)
        self.queries = {name: count.to(tokens.device) for name, count in self.queries.items()}

    def record_scores(self, layer: str, scores: torch.Tensor) -> None:
        """In: the layer's attention scores [B, H, Pq, Pk] (masked keys -inf), held until
        the same layer's pattern arrives."""
        self.scores_seen[layer] = scores

    def record(self, layer: str, pattern: torch.Tensor) -> None:
        """In: pattern [B, H, Pq, Pk]. Adds the batch's per-head sums; keeps no pattern."""
        scores = self.scores_seen.pop(layer.removesuffix("hook_pattern") + "hook_attn_scores")
        if self.compiled:
            self._record_compiled(layer, pattern, scores)
            return
        by_key = pattern.permute(0, 2, 3, 1)  # [B, Pq, Pk, H], a view
        batch_sums = {
            "previous_token": pattern.diagonal(-1, -2, -1).sum(dim=(0, 2)).double(),  # [H]
            **{name: by_key[index].sum(dim=0).double() for name, index in self.keys.items()},
        }
        batch_sums["entropy"] = self._entropy_sums(pattern, scores)
        if layer not in self.sums:
            self.sums[layer] = batch_sums
            self.counts[layer] = {name: count.clone() for name, count in self.queries.items()}
            return
        for name in HEAD_SCORES:
            self.sums[layer][name] += batch_sums[name]
            self.counts[layer][name] += self.queries[name]

    def _record_compiled(self, layer: str, pattern: torch.Tensor, scores: torch.Tensor) -> None:
        from analysis.engine.profile_kernels import fold_head_rows  # compiles on first use

        if layer not in self.tables:
            table = torch.zeros(len(HEAD_SCORES), pattern.shape[1], dtype=torch.float64)
            counts = torch.zeros(len(HEAD_SCORES), dtype=torch.float64)
            self.sums[layer] = dict(zip(HEAD_SCORES, table, strict=True))  # row views
            self.counts[layer] = dict(zip(HEAD_SCORES, counts, strict=True))
            self.tables[layer] = (table.numpy(), counts.numpy())
        table, counts = self.tables[layer]
        pattern, scores = pattern.contiguous(), scores.contiguous()
        fold_head_rows(
            pattern.numpy(), scores.numpy(), self.tokens, self.n_vocab, table, counts,
        )  # fmt: skip

    def _entropy_sums(self, pattern: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Out: float64 [H], each head's attention entropy (nats) summed over the batch's
        queries.

        In: pattern [B, H, Pq, Pk] = softmax(scores), masked keys -inf. Per query, with m the
        row's largest score (whose key has the largest p, p_max >= 1 / Pk: never underflows),
        log p_k = s_k - m + log p_max, so entropy = -log p_max - sum_k p_k (s_k - m). The
        centred scores keep the sum small whatever the scores' offset (masked keys: p = 0
        and s - m = -inf, a NaN product that nansum leaves out). Taken a few sequences at a
        time in one reused block that stays in cache (measured ~5x cheaper than
        passes over the whole batch)."""
        chunk = max(1, CACHE_CHUNK_VALUES // pattern[0].numel())
        if self.product is None or self.product.numel() < chunk * pattern[0].numel():
            self.product = pattern.new_empty(chunk * pattern[0].numel())
        rows = pattern.shape[:-1]  # [B, H, Pq]
        dot, largest = pattern.new_empty(rows), pattern.new_empty(rows)
        for start in range(0, pattern.shape[0], chunk):
            p, s = pattern[start : start + chunk], scores[start : start + chunk]
            centred = self.product[: p.numel()].view(p.shape)
            torch.sub(s, s.amax(dim=-1, keepdim=True), out=centred).mul_(p)
            torch.nansum(centred, dim=-1, out=dot[start : start + chunk])
            torch.amax(p, dim=-1, out=largest[start : start + chunk])
        return -(largest.double().log() + dot.double()).sum(dim=(0, 2))

    def scores(self) -> dict[str, HeadScores]:
        """Out: {layer: HeadScores} (nan where no query was scored)."""
        result = {}
        for layer, sums in self.sums.items():
            values = {}
            for name in HEAD_SCORES:
                count = float(self.counts[layer][name])
                total = sums[name].cpu().numpy()
                values[name] = total / count if count > 0 else np.full_like(total, np.nan)
            name = layer.removesuffix(".hook_pattern")
            result[name] = HeadScores(name, **values)
        return result


class _TokenRowStats(_StreamingUnitStats):
    """The CNN profile's running sums (same keys, same layer_profiles()), fed rows whose class
    is a token, one MLP at a time from inside its hook (no MLP output outlives its layer).

    Sums are taken around a per-neuron shift (a mean of the first batch's first rows), so
    that sums of squares do not cancel in the variance; the attributes come centred on the
    probe's means for the same reason; layer_profiles() adds the shift back. compiled: each
    batch is folded by profile_kernels.fold_neuron_rows (float32 on the CPU) in one pass.
    Otherwise by torch operations (measured on 64-sequence batches of 64 positions and two
    MLPs of 256 neurons, where folding a batch by the CNN path took longer than the forward
    pass): sums in float32 on the layer's own output, a chunk of rows at a time (per-token
    sums by one index_add instead of a one-hot design matrix [V, R] times the rows; the count
    of positive outputs by a sign pass, boolean reductions measured ~5x slower), added to
    float64 running sums.
    """

    def __init__(self, n_classes: int, *, nonnegative: bool, compiled: bool = False) -> None:
        super().__init__()
        self.n_classes, self.compiled = n_classes, compiled
        self.nonnegative = nonnegative  # ReLU outputs: a sign is already 0 or 1
        self.layers: dict[str, dict[str, torch.Tensor]] = {}  # per layer, as self.sums
        self.shifts: dict[str, torch.Tensor] = {}  # float32 [M] per layer
        self.arrays: dict[str, tuple[np.ndarray, ...]] = {}  # the compiled path's views
        self.scratch: dict[str, torch.Tensor] = {}  # a reused [R, M] float32 block per layer
        self.rows_seen: dict[str, int] = {}

    def _scratch(self, name: str, output: torch.Tensor) -> torch.Tensor:
        block = self.scratch.get(name)
        if block is None or block.shape[0] < output.shape[0]:
            block = self.scratch[name] = torch.empty_like(output)
        return block[: output.shape[0]]

    def update_layer(
        self, name: str, output: torch.Tensor, tokens: torch.Tensor | None, design: torch.Tensor
    ) -> None:
        """In: the layer's outputs float32 [R, M]; tokens int64 [R] (None: no token classes);
        design float32 [1 + A, R]: ones, then the attributes centred. Adds the rows."""
        rows, width = output.shape
        sums = self.layers.get(name)
        if sums is None:
            # The mean of the first batch's first SHIFT_ROWS rows: near enough to each mean
            # that no sum of squares cancels, without a pass over the whole batch. A neuron
            # whose first rows held a NaN or an infinity gets no shift: its sums are no number
            # either way, but its other classes' means keep theirs.
            first = output[:SHIFT_ROWS].mean(dim=0)
            self.shifts[name] = first.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            sums = self.layers[name] = {
                "design": output.new_zeros(design.shape[0], width, dtype=torch.float64),
                "tokens": output.new_zeros(self.n_classes, width, dtype=torch.float64),
                "squares": output.new_zeros(width, dtype=torch.float64),
                "positive": output.new_zeros(width, dtype=torch.float64),
                "maximum": output.new_full((width,), float("-inf"), dtype=torch.float64),
            }
            if self.compiled:  # numpy views of the shift and the sums, made once
                keys = ("design", "tokens", "squares", "positive", "maximum")
                views = (sums[key].numpy() for key in keys)
                self.arrays[name] = (self.shifts[name].numpy(), *views)
        if self.compiled:
            self._update_compiled(self.arrays[name], output, tokens, design)
        else:
            self._update_with_torch(name, sums, output, tokens, design)
        self.rows_seen[name] = self.rows_seen.get(name, 0) + rows

    @staticmethod
    def _update_compiled(arrays, output, tokens, design) -> None:
        from analysis.engine.profile_kernels import fold_neuron_rows  # compiles on first use

        shift, *sums = arrays
        classes = np.empty(0, np.int64) if tokens is None else tokens.contiguous().numpy()
        fold_neuron_rows(
            output.contiguous().numpy(), shift, design.contiguous().numpy(), classes, *sums
        )

    def _update_with_torch(self, name, sums, output, tokens, design) -> None:
        rows, width = output.shape
        shift = self.shifts[name]
        chunk = max(1, CACHE_CHUNK_VALUES // width)
        starts = range(0, rows, chunk)
        block = self._scratch(name, output[:chunk])
        # each chunk's results go to its own row (out=): no accumulating op per chunk
        partial = {
            "positive": output.new_empty(len(starts), width),
            "design": output.new_empty(len(starts), design.shape[0], width),
            "squares": output.new_empty(len(starts), width),
            "maximum": output.new_empty(len(starts), width),
        }
        if tokens is not None:  # per chunk: float32 sums over at most a chunk's rows
            partial["tokens"] = output.new_zeros(len(starts), self.n_classes, width)
        for index, start in enumerate(starts):
            part = output[start : start + chunk]
            done = block[: part.shape[0]]
            torch.sign(part, out=done)
            if not self.nonnegative:
                done.clamp_(min=0)
            torch.sum(done, dim=0, out=partial["positive"][index])  # exact up to 2 ** 24
            torch.sub(part, shift, out=done)
            # the sum and the attribute products
            torch.matmul(design[:, start : start + chunk], done, out=partial["design"][index])
            if tokens is not None:
                partial["tokens"][index].index_add_(0, tokens[start : start + chunk], done)
            torch.sum(done.square_(), dim=0, out=partial["squares"][index])
            torch.amax(part, dim=0, out=partial["maximum"][index])
        for key in ("positive", "design", "squares", "tokens"):
            if key in partial:
                sums[key] += partial[key].sum(dim=0, dtype=torch.float64)
        torch.maximum(sums["maximum"], partial["maximum"].amax(dim=0), out=sums["maximum"])

    def layer_profiles(self, widths, class_counts, attribute_sums):
        """As _StreamingUnitStats.layer_profiles (attribute_sums: of the centred attributes),
        with the shift added back to the means and to the means of the classes present."""
        names = list(widths)
        self.count = self.rows_seen[names[0]]
        layers = [self.layers[name] for name in names]
        columns = {key: torch.cat([sums[key] for sums in layers], dim=-1) for key in layers[0]}
        # a neuron with a NaN output has NaN squares; its count and maximum are no number
        # either (the compiled path leaves NaN out of them)
        undefined = columns["squares"].isnan()
        columns["positive"][undefined] = float("nan")
        columns["maximum"][undefined] = float("nan")
        self.sums = {
            # [1 + K + A, U], as the CNN path's design-matrix product
            "linear": torch.cat([columns["design"][:1], columns["tokens"], columns["design"][1:]]),
            "squares": columns["squares"],
            "inactive": self.count - columns["positive"],
            "maximum": columns["maximum"],
        }
        profiles = super().layer_profiles(widths, class_counts, attribute_sums)
        present = np.asarray(class_counts) > 0
        for name in names:
            shift = self.shifts[name].double().cpu().numpy()
            profile = profiles[name]
            profile.mean = profile.mean + shift
            profile.class_means = profile.class_means + np.where(
                present[:, None], shift[None, :], 0.0
            )
        return profiles


class _NeuronRows:
    """Each MLP's output [B, P, M] as a batch's rows [B * P, M], one per (sequence,
    position): its token as the class and the task's attributes, centred on the probe's
    means, as the CNN profile's attributes; folded into the statistics by the MLP's hook."""

    def __init__(
        self,
        n_classes: int,
        attribute_means: dict[str, float],
        *,
        nonnegative: bool,
        compiled: bool = False,
    ) -> None:
        self.n_classes, self.attribute_means = n_classes, attribute_means
        self.widths: dict[str, int] = {}
        self.stats = _TokenRowStats(n_classes, nonnegative=nonnegative, compiled=compiled)
        self.tokens: torch.Tensor | None = None
        self.design: torch.Tensor | None = None

    def set_batch(self, batch: SequenceBatch, device: torch.device, dtype: torch.dtype) -> None:
        """The tokens and the design (ones, centred attributes; the model's dtype) of the
        batch about to run."""
        rows = batch.tokens.numel()
        self.tokens = batch.tokens.reshape(-1).to(device) if self.n_classes else None
        shape = (1 + len(self.attribute_means), rows)
        if self.design is None or self.design.shape != shape:  # kept across equal batches
            self.design = torch.ones(shape, device=device, dtype=dtype)
        for row, (name, mean) in enumerate(self.attribute_means.items(), start=1):
            # copy_ converts as .to(dtype) does; then the mean is taken off in place
            self.design[row].copy_(batch.attributes[name].reshape(-1)).sub_(mean)

    def record(self, name: str, output: torch.Tensor) -> None:
        self.widths[name] = output.shape[-1]
        rows = output.reshape(-1, output.shape[-1])  # [B * P, M]
        self.stats.update_layer(name, rows, self.tokens, self.design)


def _class_counts(probe: SequenceBatch, n_classes: int) -> np.ndarray:
    tokens = probe.tokens.reshape(-1)
    return torch.bincount(tokens, minlength=n_classes)[:n_classes].numpy().astype(np.int64)


def _attribute_means(probe: SequenceBatch) -> dict[str, float]:
    return {name: float(value.double().mean()) for name, value in probe.attributes.items()}


def _centred_attribute_sums(
    probe: SequenceBatch, means: dict[str, float], dtype: torch.dtype
) -> dict[str, tuple[float, float]]:
    """Out: {attribute: (sum, sum of squares)} of the attributes centred on their means as
    _NeuronRows.set_batch folds them (rounded to the model's dtype), taken once (float64)."""
    sums = {}
    for name, mean in means.items():
        folded = torch.sub(probe.attributes[name].to(dtype), mean).double()
        sums[name] = (float(folded.sum()), float(folded.square().sum()))
    return sums


def _mlp_layers(model: Transformer) -> list[str]:
    return [f"blocks.{index}.mlp" for index, block in enumerate(model.blocks) if block.has_mlp]


def profile_transformer(
    model: Transformer,
    probe: SequenceBatch,
    *,
    batch_size: int = 64,
    compiled: bool | None = None,
) -> TransformerProfile:
    """Stream head scores of every attention layer and statistics of every MLP's neurons.

    In: model, probe sequences (tokens [N, P] and per-position attributes [N, P]); compiled:
    fold batches with profile_kernels (None: when the model is float32 on the CPU, the only
    case those kernels take). Out: TransformerProfile. Runs in eval mode under
    inference_mode (mode restored); hooks are removed on exit, also when the forward pass
    raises.
    """
    if len(probe) == 0:
        raise ValueError("cannot profile an empty probe set")
    attention = [
        f"blocks.{index}.attn.{hook}"
        for index in range(len(model.blocks))
        for hook in ("hook_attn_scores", "hook_pattern")
    ]
    mlps = _mlp_layers(model)
    n_classes = model.config.d_vocab if model.config.d_vocab <= MAX_TOKEN_CLASSES else 0
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    kernels_apply = device.type == "cpu" and dtype == torch.float32
    if compiled is None:
        compiled = kernels_apply
    elif compiled and not kernels_apply:
        raise ValueError(f"the compiled kernels take float32 on the CPU, not {dtype} on {device}")
    heads = _HeadScoreSums(compiled=compiled, n_vocab=model.config.d_vocab)
    neurons = _NeuronRows(
        n_classes,
        _attribute_means(probe),
        nonnegative=model.config.act_fn == "relu",
        compiled=compiled,
    )

    def record(name: str, output: torch.Tensor) -> None:
        if name.endswith(".hook_attn_scores"):
            heads.record_scores(name, output)
        elif name.endswith(".hook_pattern"):
            heads.record(name, output)
        else:
            neurons.record(name.removesuffix(".hook_post"), output)

    hooked = attention + [f"{name}.hook_post" for name in mlps]
    with eval_mode(model), torch.inference_mode(), recording_hooks(model, hooked, record):
        for start in range(0, len(probe), batch_size):
            batch = probe.slice(start, start + batch_size)
            tokens = batch.tokens.to(device)
            heads.set_tokens(tokens)
            if mlps:
                neurons.set_batch(batch, device, dtype)
            model(tokens)
    return TransformerProfile(
        heads.scores(), _neuron_profile(neurons, probe, n_classes, dtype), len(probe)
    )


def _neuron_profile(neurons: _NeuronRows, probe: SequenceBatch, n_classes: int, dtype: torch.dtype):
    if not neurons.widths:
        return None
    attribute_sums = _centred_attribute_sums(probe, neurons.attribute_means, dtype)
    layers = neurons.stats.layer_profiles(
        neurons.widths, _class_counts(probe, n_classes), attribute_sums
    )
    class_names = [f"token {token}" for token in range(n_classes)]
    return ActivationProfile(layers, class_names, list(probe.attributes), neurons.stats.count)

"""Tiny transformer specs and hand-built models with known heads for the engine tests."""

import torch

from analysis.engine.runtime import configure_cpu_runtime
from analysis.engine.transformer import build_transformer

configure_cpu_runtime(threads=1)

TINY_TRANSFORMER = {
    "family": "transformer",
    "d_vocab": 12,
    "n_ctx": 16,
    "d_model": 16,
    "d_head": 8,
    "blocks": [{"n_heads": 2}, {"n_heads": 2, "d_mlp": 24}],
    "act_fn": "relu",
    "normalization": "ln",
    "hyperparameters": {"learning_rate": 0.003, "optimizer": "adamw", "batch_size": 16},
}

# The planted model: token t is one-hot in the "token" subspace, position p in "position".
# Layer 0 head 0 attends from p to p - 1 and copies that token into the "previous" subspace;
# layer 1 head 0 matches the current token against "previous" (so attends to the position
# after an earlier occurrence) and copies that position's token into "out", which the
# unembedding reads. Heads 1 have zero weights: uniform attention, no output.
PLANTED_VOCAB, PLANTED_CTX = 16, 16
TOKEN, POSITION = 0, PLANTED_VOCAB
PREVIOUS = POSITION + PLANTED_CTX
OUT = PREVIOUS + PLANTED_VOCAB
PLANTED_D_MODEL = OUT + PLANTED_VOCAB
PLANTED_D_HEAD = PLANTED_CTX
# Query/key scale: matched pairs score SHARPNESS**2 / sqrt(d_head) = 25 above the rest.
SHARPNESS = 10.0
PREVIOUS_TOKEN_HEAD = (0, 0)  # (block, head)
INDUCTION_HEAD = (1, 0)


def planted_spec() -> dict:
    """Out: the attention-only two-layer spec the planted weights fit."""
    return {
        "family": "transformer",
        "d_vocab": PLANTED_VOCAB,
        "n_ctx": PLANTED_CTX,
        "d_model": PLANTED_D_MODEL,
        "d_head": PLANTED_D_HEAD,
        "blocks": [{"n_heads": 2}, {"n_heads": 2}],
    }


def _subspace(start: int, size: int) -> torch.Tensor:
    """Out: [D, size] reading (or, transposed, writing) `size` residual dims from `start`."""
    block = torch.zeros(PLANTED_D_MODEL, size)
    block[start : start + size, :size] = torch.eye(size)
    return block


def planted_induction_model():
    """Out: the planted model (eval mode): a previous-token head at layer 0 head 0 and an
    induction head at layer 1 head 0, every other weight zero."""
    model = build_transformer(planted_spec())
    vocab, ctx = PLANTED_VOCAB, PLANTED_CTX
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embed.W_E[:, TOKEN : TOKEN + vocab] = torch.eye(vocab)
        model.pos_embed.W_pos[:, POSITION : POSITION + ctx] = torch.eye(ctx)
        layer0, layer1 = model.blocks[0].attn, model.blocks[1].attn
        shift = torch.diag(torch.ones(ctx - 1), 1)  # key position j -> direction j + 1
        layer0.W_Q[0] = SHARPNESS * _subspace(POSITION, ctx)
        layer0.W_K[0] = SHARPNESS * _subspace(POSITION, ctx)[:, :ctx] @ shift
        layer0.W_V[0] = _subspace(TOKEN, vocab)[:, :vocab] @ torch.eye(vocab, ctx)
        layer0.W_O[0] = torch.eye(ctx, vocab) @ _subspace(PREVIOUS, vocab).T
        layer1.W_Q[0] = SHARPNESS * _subspace(TOKEN, vocab) @ torch.eye(vocab, ctx)
        layer1.W_K[0] = SHARPNESS * _subspace(PREVIOUS, vocab) @ torch.eye(vocab, ctx)
        layer1.W_V[0] = _subspace(TOKEN, vocab) @ torch.eye(vocab, ctx)
        layer1.W_O[0] = torch.eye(ctx, vocab) @ _subspace(OUT, vocab).T
        model.unembed.W_U[:] = _subspace(OUT, vocab)
    return model.eval()


def full_pattern_scores(patterns: list[torch.Tensor], tokens: torch.Tensor) -> dict:
    """Reference head scores from whole patterns, by loops over queries (no shared masks).

    In: one layer's patterns [N, H, P, P] (concatenated batches), tokens [N, P].
    Out: {score: [H] list} as the streamed profile defines them.
    """
    pattern = torch.cat(patterns).double()
    n, heads, positions, _ = pattern.shape
    totals = {name: [0.0] * heads for name in ("previous_token", "induction", "duplicate_token")}
    counts = dict.fromkeys(totals, 0)
    entropy = [0.0] * heads
    for example in range(n):
        row = tokens[example].tolist()
        for q in range(positions):
            keys = {
                "previous_token": [q - 1] if q >= 1 else [],
                "duplicate_token": [k for k in range(q) if row[k] == row[q]],
                "induction": [k for k in range(1, q) if row[k - 1] == row[q]],
            }
            for name, chosen in keys.items():
                if chosen:
                    counts[name] += 1
                    for head in range(heads):
                        totals[name][head] += float(pattern[example, head, q, chosen].sum())
            for head in range(heads):
                p = pattern[example, head, q]
                p = p[p > 0]
                entropy[head] -= float((p * p.log()).sum())
    scores = {name: [value / counts[name] for value in totals[name]] for name in totals}
    scores["entropy"] = [value / (n * positions) for value in entropy]
    return scores

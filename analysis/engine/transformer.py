"""Small transformers built from transformer specs, with TransformerLens's names.

Parameters are laid out per head as in TransformerLens (W_Q [n_heads, d_model, d_head],
W_O [n_heads, d_head, d_model], ...) under the same module paths (`embed.W_E`,
`blocks.0.attn.W_Q`, `blocks.0.mlp.W_in`, `unembed.W_U`, ...), so a state dict moves to and
from a HookedTransformer by its keys. Every place a researcher reads or edits is a HookPoint,
an identity module named as TransformerLens names it (`hook_embed`, `blocks.0.attn.hook_z`,
...), so ordinary forward hooks attach by name.

Shapes: B batch, P positions, H heads, D d_model, E d_head, M d_mlp, V d_vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from analysis.engine.transformer_specs import (
    BlockConfig,
    TransformerConfig,
    validate_transformer_spec,
)

LAYER_NORM_EPS = 1e-5  # TransformerLens's default
# TransformerLens initialises weights with std 0.8 / sqrt(d_model) ("initializer_range").
INIT_SCALE = 0.8


class HookPoint(nn.Module):
    """An identity module: a named place where forward hooks read or replace a tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _weight(*shape: int, d_model: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * (INIT_SCALE / math.sqrt(d_model)))


class Embed(nn.Module):
    """Token embedding W_E [V, D]."""

    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = _weight(d_vocab, d_model, d_model=d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]  # [B, P] -> [B, P, D]


class PosEmbed(nn.Module):
    """Learned positional embedding W_pos [n_ctx, D]."""

    def __init__(self, n_ctx: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = _weight(n_ctx, d_model, d_model=d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, positions = tokens.shape
        return self.W_pos[:positions].unsqueeze(0).expand(batch, -1, -1)  # [B, P, D]


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens's parameter names w, b [D]."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w, self.b, LAYER_NORM_EPS)


class Attention(nn.Module):
    """Multi-head self-attention with per-head weights and hook points for q, k, v, scores,
    pattern and z (the heads' outputs before W_O)."""

    def __init__(
        self, d_model: int, n_heads: int, d_head: int, *, n_ctx: int, causal: bool
    ) -> None:
        super().__init__()
        self.n_heads, self.d_head, self.causal = n_heads, d_head, causal
        # Added to the scores: 0 where a key may be seen, -inf after the query (causal). An
        # add measured ~13x cheaper than masked_fill on [64, 2, 32, 32] scores, with the same
        # result. Not persistent: state dicts hold parameters only.
        future = torch.ones(n_ctx, n_ctx, dtype=torch.bool).triu(1)
        hidden = torch.zeros(n_ctx, n_ctx).masked_fill(future, float("-inf"))
        self.register_buffer("causal_mask", hidden, persistent=False)
        for name in ("W_Q", "W_K", "W_V"):
            setattr(self, name, _weight(n_heads, d_model, d_head, d_model=d_model))
        self.W_O = _weight(n_heads, d_head, d_model, d_model=d_model)
        for name in ("b_Q", "b_K", "b_V"):
            setattr(self, name, nn.Parameter(torch.zeros(n_heads, d_head)))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            setattr(self, name, HookPoint())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)  # [B, P, H, E]
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)  # [B, P, H, E]
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)  # [B, P, H, E]
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.d_head)  # [B, H, P, P]
        if self.causal:
            positions = x.shape[1]
            scores = scores + self.causal_mask[:positions, :positions]
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(scores.softmax(dim=-1))  # [B, H, Pq, Pk]
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))  # [B, P, H, E]
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O  # [B, P, D]


class MLP(nn.Module):
    """Two-layer MLP W_in [D, M], W_out [M, D] with hooks before and after the activation."""

    def __init__(self, d_model: int, d_mlp: int, act_fn: str) -> None:
        super().__init__()
        self.W_in = _weight(d_model, d_mlp, d_model=d_model)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = _weight(d_mlp, d_model, d_model=d_mlp)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.act = nn.ReLU() if act_fn == "relu" else nn.GELU()
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)  # [B, P, M]
        post = self.hook_post(self.act(pre))  # [B, P, M]
        return post @ self.W_out + self.b_out  # [B, P, D]


class TransformerBlock(nn.Module):
    """resid_pre -> (+ attention) -> resid_mid -> (+ MLP, if any) -> resid_post."""

    def __init__(self, config: TransformerConfig, block: BlockConfig) -> None:
        super().__init__()
        d_model, norm = config.d_model, config.normalization == "ln"
        self.ln1 = LayerNorm(d_model) if norm else nn.Identity()
        self.attn = Attention(
            d_model, block.n_heads, config.d_head, n_ctx=config.n_ctx, causal=config.causal
        )
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        self.hook_resid_post = HookPoint()
        self.has_mlp = block.d_mlp is not None
        if self.has_mlp:
            self.ln2 = LayerNorm(d_model) if norm else nn.Identity()
            self.mlp = MLP(d_model, block.d_mlp, config.act_fn)
            self.hook_resid_mid, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)  # [B, P, D]
        resid = resid + self.hook_attn_out(self.attn(self.ln1(resid)))
        if self.has_mlp:
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Transformer(nn.Module):
    """Token + positional embedding, blocks, optional final LayerNorm, unembedding.

    In: tokens int64 [B, P] with P <= n_ctx. Out: logits [B, P, V].
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.d_model
        self.embed = Embed(config.d_vocab, d_model)
        self.pos_embed = PosEmbed(config.n_ctx, d_model)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.blocks = nn.ModuleList(TransformerBlock(config, block) for block in config.blocks)
        self.ln_final = LayerNorm(d_model) if config.normalization == "ln" else nn.Identity()
        self.unembed = Unembed(d_model, config.d_vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] > self.config.n_ctx:
            raise ValueError(
                f"tokens must be [batch, positions <= {self.config.n_ctx}], "
                f"got {list(tokens.shape)}"
            )
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))  # [B, P, V]


class Unembed(nn.Module):
    """Unembedding W_U [D, V], b_U [V]."""

    def __init__(self, d_model: int, d_vocab: int) -> None:
        super().__init__()
        self.W_U = _weight(d_model, d_vocab, d_model=d_model)
        self.b_U = nn.Parameter(torch.zeros(d_vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U  # [B, P, D] -> [B, P, V]


def build_transformer(spec: dict) -> Transformer:
    """Build the spec. In: a valid transformer spec (TransformerSpecError otherwise). Out: the
    model. Initialisation uses torch's global RNG: call set_seed() first for reproducibility."""
    return Transformer(validate_transformer_spec(spec))


def hook_names(model: Transformer) -> list[str]:
    """Out: the names of every hook point in the model, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, HookPoint)]


def hooked_transformer_config(config: TransformerConfig) -> dict:
    """Out: keyword arguments for TransformerLens's HookedTransformerConfig describing the same
    model. Raises ValueError when blocks differ, which a HookedTransformer cannot hold."""
    if not config.uniform:
        raise ValueError("TransformerLens needs every block to have the same heads and MLP")
    block = config.blocks[0]
    return {
        "n_layers": config.n_layers,
        "d_model": config.d_model,
        "n_ctx": config.n_ctx,
        "d_head": config.d_head,
        "n_heads": block.n_heads,
        "d_vocab": config.d_vocab,
        "d_mlp": block.d_mlp,
        "attn_only": block.d_mlp is None,
        "act_fn": config.act_fn if block.d_mlp is not None else None,
        "normalization_type": "LN" if config.normalization == "ln" else None,
        "attention_dir": "causal" if config.causal else "bidirectional",
        "positional_embedding_type": "standard",
    }


def hooked_transformer_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Out: the model's parameters under HookedTransformer's state-dict keys (identical keys:
    the modules are named as TransformerLens names them), detached, contiguous, on the CPU."""
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


def spec_from_hooked_config(config: dict) -> dict:
    """In: a HookedTransformerConfig's fields (as its to_dict() gives them). Out: the
    transformer spec of the same model, so a HookedTransformer's state dict loads into
    build_transformer(spec) by its keys. Raises ValueError for what this engine does not
    build (other positional embeddings, normalisations, activations or attention shapes)."""
    unsupported = {
        "positional_embedding_type": ("standard",),
        "normalization_type": (None, "LN"),
        "attention_dir": ("causal", "bidirectional"),
    }
    for key, allowed in unsupported.items():
        if config.get(key, allowed[0]) not in allowed:
            raise ValueError(f"{key} {config[key]!r} is not supported here")
    attn_only = bool(config.get("attn_only", False))
    if not attn_only and config.get("act_fn") not in ("relu", "gelu"):
        raise ValueError(f"act_fn {config.get('act_fn')!r} is not supported here")
    block = {"n_heads": config["n_heads"]}
    if not attn_only:
        block["d_mlp"] = config["d_mlp"]
    return {
        "family": "transformer",
        "d_vocab": config["d_vocab"],
        "n_ctx": config["n_ctx"],
        "d_model": config["d_model"],
        "d_head": config["d_head"],
        "blocks": [dict(block) for _ in range(config["n_layers"])],
        "act_fn": "relu" if attn_only else config["act_fn"],
        "normalization": "ln" if config.get("normalization_type") == "LN" else None,
        "causal": config.get("attention_dir", "causal") == "causal",
    }

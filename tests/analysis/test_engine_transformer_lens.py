"""Interop with the real TransformerLens: same logits both ways through safetensors files.

transformer-lens is not a dependency of the project: 4.x removed HookedTransformer, and 3.9.0
brings ~75 packages. The test builds a venv once (tests/tool_venvs.py: transformer-lens==3.9.0,
reusing this project's torch through a .pth file; ~2.5 min on the 2-core machine, then cached)
and runs TransformerLens in a subprocess there. Where the venv cannot be built, the test skips
(or, with services required, fails).
"""

import json
import subprocess
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis.engine.builder import load_weights, set_seed
from analysis.engine.transformer import (
    build_transformer,
    hooked_transformer_config,
    hooked_transformer_state_dict,
    spec_from_hooked_config,
)
from analysis.engine.transformer_specs import validate_transformer_spec
from tests.tool_venvs import tool_python

TRANSFORMER_LENS = "transformer-lens==3.9.0"
ATOL = 1e-4

SPEC = {
    "family": "transformer",
    "d_vocab": 20,
    "n_ctx": 12,
    "d_model": 16,
    "d_head": 4,
    "blocks": [{"n_heads": 3, "d_mlp": 24}, {"n_heads": 3, "d_mlp": 24}],
    "act_fn": "gelu",
    "normalization": "ln",
}
# What TransformerLens builds and exports in the other direction: attention only, no LayerNorm.
IMPORTED_CONFIG = {
    "n_layers": 2, "d_model": 16, "n_ctx": 12, "d_head": 8, "n_heads": 2, "d_vocab": 20,
    "attn_only": True, "normalization_type": None, "act_fn": None,
}  # fmt: skip

SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    import torch
    from safetensors.torch import load_file, save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    work = Path(sys.argv[1])
    tokens = load_file(work / "tokens.safetensors")["tokens"]
    config = json.loads((work / "exported.json").read_text())
    model = HookedTransformer(HookedTransformerConfig(**config, device="cpu", seed=0))
    result = model.load_state_dict(load_file(work / "exported.safetensors"), strict=False)
    missing = [key for key in result.missing_keys if not key.endswith(("mask", "IGNORE"))]
    assert not missing and not result.unexpected_keys, (missing, result.unexpected_keys)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    save_file({"logits": logits, "pattern": cache["blocks.1.attn.hook_pattern"]},
              str(work / "exported_logits.safetensors"))

    config = json.loads((work / "imported.json").read_text())
    model = HookedTransformer(HookedTransformerConfig(**config, device="cpu", seed=7))
    state = {key: value for key, value in model.state_dict().items()
             if not key.endswith(("mask", "IGNORE"))}
    save_file(state, str(work / "imported.safetensors"))
    with torch.no_grad():
        save_file({"logits": model(tokens)}, str(work / "imported_logits.safetensors"))
    (work / "imported_config.json").write_text(json.dumps(
        {key: value for key, value in model.cfg.to_dict().items()
         if key in ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_vocab", "d_mlp",
                    "attn_only", "act_fn", "normalization_type", "attention_dir",
                    "positional_embedding_type")}))
    """
)


@pytest.fixture(scope="module")
def transformer_lens_run(tmp_path_factory):
    """Export our model, let TransformerLens run it and export its own; out: the folder."""
    python = tool_python("transformer-lens", TRANSFORMER_LENS, share_our_packages=True)
    work = tmp_path_factory.mktemp("tl")
    set_seed(11)
    model = build_transformer(SPEC).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # LayerNorm and biases too, not just init values
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    tokens = torch.randint(20, (3, 12), generator=torch.Generator().manual_seed(0))
    save_file({"tokens": tokens}, str(work / "tokens.safetensors"))
    save_file(hooked_transformer_state_dict(model), str(work / "exported.safetensors"))
    exported = hooked_transformer_config(validate_transformer_spec(SPEC))
    (work / "exported.json").write_text(json.dumps(exported))
    (work / "imported.json").write_text(json.dumps(IMPORTED_CONFIG))
    (work / "run.py").write_text(SCRIPT)
    completed = subprocess.run(
        [str(python), str(work / "run.py"), str(work)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return work, model, tokens


def test_a_model_built_here_gives_transformer_lens_the_same_logits(transformer_lens_run):
    work, model, tokens = transformer_lens_run
    theirs = load_file(work / "exported_logits.safetensors")
    patterns = []
    handle = model.blocks[1].attn.hook_pattern.register_forward_hook(
        lambda _m, _i, output: patterns.append(output)
    )
    try:
        with torch.no_grad():
            ours = model(tokens)
    finally:
        handle.remove()
    assert ours.abs().max() > 1  # not trivially small logits
    assert torch.allclose(ours, theirs["logits"], atol=ATOL, rtol=0)
    assert torch.allclose(patterns[0], theirs["pattern"], atol=ATOL, rtol=0)


def test_a_transformer_lens_state_dict_registers_here_with_the_same_logits(
    transformer_lens_run,
):
    work, _model, tokens = transformer_lens_run
    config = json.loads((work / "imported_config.json").read_text())
    spec = spec_from_hooked_config(config)
    assert spec["blocks"] == [{"n_heads": 2}, {"n_heads": 2}]
    model = load_weights(build_transformer(spec), work / "imported.safetensors").eval()
    with torch.no_grad():
        ours = model(tokens)
    theirs = load_file(work / "imported_logits.safetensors")["logits"]
    assert torch.allclose(ours, theirs, atol=ATOL, rtol=0)

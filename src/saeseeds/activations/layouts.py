"""Module layouts and sizes of known models: which hook names exist and how wide they are, known without loading any weights.

Loading a model takes from a second (the embedded SmolLM2 once its copy exists; 11 s the first time) to minutes (a
hub download), so a typo in a hook (`layers.30.mlp` in a 30-layer model, GPT-2's `h.6` for a Llama) would otherwise
surface only inside the activations job. For the models below the config check catches it before any job starts;
for others `saeseeds.activations.models.resolve_hook` still checks it first thing in the job, before any text is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Layout:
    """The module tree of one architecture family, down to the children of a block."""

    base: str
    """Name of the base transformer inside the *ForCausalLM model (hooks may start with it)."""

    blocks: str
    """Name of the list of transformer blocks (a hook's `blocks.i`)."""

    block_children: tuple[str, ...]
    """Direct children of a block; deeper paths are checked when the model loads."""

    top: tuple[str, ...]
    """Other direct children of the base transformer."""


LAYOUTS = {
    "llama": Layout("model", "layers", ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm"), ("embed_tokens", "norm", "rotary_emb")),
    "gpt_neox": Layout(
        "gpt_neox", "layers",
        ("input_layernorm", "post_attention_layernorm", "post_attention_dropout", "post_mlp_dropout", "attention", "mlp"),
        ("embed_in", "emb_dropout", "final_layer_norm", "rotary_emb"),
    ),
    "gpt2": Layout("transformer", "h", ("ln_1", "attn", "ln_2", "mlp"), ("wte", "wpe", "drop", "ln_f")),
}

class KnownModel(NamedTuple):
    """What saeseeds knows of a model without loading it: its layout family, blocks and hidden size."""

    family: str
    n_blocks: int
    d_model: int


KNOWN_MODELS = {
    "embedded:smollm2-135m": KnownModel("llama", 30, 576),
    "HuggingFaceTB/SmolLM2-135M": KnownModel("llama", 30, 576),
    "HuggingFaceTB/SmolLM-135M": KnownModel("llama", 30, 576),
    "EleutherAI/pythia-160m": KnownModel("gpt_neox", 12, 768),
    "gpt2": KnownModel("gpt2", 12, 768),
    "openai-community/gpt2": KnownModel("gpt2", 12, 768),
    "meta-llama/Meta-Llama-3-8B": KnownModel("llama", 32, 4096),
    "meta-llama/Llama-3.1-8B": KnownModel("llama", 32, 4096),
}
"""Models whose hooks the config check can verify and whose resources the planner can size (others need
`models.NAME.d_model`)."""


def hook_problem(source: str, hook: str) -> str | None:
    """Returns why `hook` names no module of model `source`, or None when it does or the model is unknown."""
    if source not in KNOWN_MODELS:
        return None
    family, n_blocks, _ = KNOWN_MODELS[source]
    layout = LAYOUTS[family]
    parts = hook.split(".")
    if parts[0] == layout.base:
        parts = parts[1:]
    example = f"{layout.blocks}.6.mlp (MLP out) or {layout.blocks}.6 (residual stream)"
    if not parts:
        return f"names the whole base model; name a block such as {example}"
    if parts[0] != layout.blocks:
        if len(parts) == 1 and parts[0] in layout.top:
            return None
        return f"is not a module of {source} ({family} layout: blocks are {layout.blocks}.0 .. {layout.blocks}.{n_blocks - 1}, e.g. {example})"
    if len(parts) == 1:
        return f"names the list of blocks; pick one, e.g. {example}"
    if not parts[1].isdigit() or int(parts[1]) >= n_blocks:
        return f"block {parts[1]!r} does not exist: {source} has blocks {layout.blocks}.0 .. {layout.blocks}.{n_blocks - 1}"
    if len(parts) > 2 and parts[2] not in layout.block_children:
        return f"{parts[2]!r} is not a child of a {family} block (children: {', '.join(layout.block_children)})"
    return None

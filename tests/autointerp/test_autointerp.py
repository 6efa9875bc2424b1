"""Autointerp prompts, parsers, detection-score arithmetic, and the explain-then-score loop over real HTTP."""

import math

import numpy as np
import pandas as pd
import pytest
from openai_server import API_KEY, KEYWORD, Server

from saeseeds.autointerp.explain_score import (
    AutointerpConfig, detection_prompt, detection_score, explain_and_score, explanation_prompt, highlight,
    parse_detection, parse_explanation,
)
from saeseeds.autointerp.llm import OK, OpenAIBackend


def test_highlight_marks_runs_of_active_tokens():
    tokens = ["And", " the", " LORD", " God", " said"]
    assert highlight(tokens, [0, 0, 2.0, 0.5, 0]) == "And the <<LORD God>> said"
    assert highlight(tokens, [1, 0, 0, 0, 3]) == "<<And>> the LORD God <<said>>"
    assert highlight(["x"], [0]) == "x"


def test_explanation_prompt_lists_the_examples():
    messages = explanation_prompt(["a <<b>>", "<<c>> d"])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "<< and >>" in messages[0]["content"]
    assert messages[1]["content"].startswith("Example 1: a <<b>>\nExample 2: <<c>> d\n\n")
    assert '"Explanation:"' in messages[1]["content"]


def test_detection_prompt_one_text_asks_yes_no_several_ask_a_list():
    one = detection_prompt("the word LORD", ["the LORD said"])[1]["content"]
    assert one == "Explanation: the word LORD\n\nText: the LORD said\n\nIs the feature active in this text? Answer Yes or No."
    three = detection_prompt("x", ["a", "b", "c"])[1]["content"]
    assert "Text 1: a\nText 2: b\nText 3: c" in three and "[1, 0, 1]" in three and "3 texts" in three


@pytest.mark.parametrize(
    "reply, value, status",
    [
        ("Explanation: the word LORD in the Bible.", "the word LORD in the Bible.", OK),
        ("Sure!\nExplanation - names of <<God>>\nmore text", "names of God", OK),
        ("Mentions of kings", "Mentions of kings", OK),
        ('"Explanation: quoted"', "quoted", OK),
        ("I'm sorry, but I can't explain this.", None, "refused"),
        ("   ", None, "malformed"),
        (None, None, "malformed"),
        ("Explanation:   ", None, "malformed"),
        ("Explanation: Explanation: Explanation:", None, "malformed"),
        ("Explanation: Explanation: names of kings", "names of kings", OK),
    ],
)
def test_parse_explanation(reply, value, status):
    parsed = parse_explanation(reply)
    assert (parsed.value, parsed.status) == (value, status)


@pytest.mark.parametrize(
    "reply, n, value, status",
    [
        ("[1, 0, 1]", 3, [1, 0, 1], OK),
        ("Sure, here it is: [0,1]", 2, [0, 1], OK),
        ('["yes", "no"]', 2, [1, 0], OK),
        ("[1, 0]", 3, None, "malformed"),  # wrong length
        ("[1, maybe, 0]", 3, None, "malformed"),
        ("[1, 0] no wait [1, 1, 0]", 3, [1, 1, 0], OK),  # the first list of the right length
        ("Yes.", 1, [1], OK),
        ("no, it is not", 1, [0], OK),
        ("The answer is", 1, None, "malformed"),
        ("The feature is active in this text.", 1, [1], OK),
        ("The feature is not active in this text", 1, [0], OK),
        ("The feature is passive. The", 1, [0], OK),
        ("The feature is inactive here", 1, [0], OK),
        ("The feature responds to kings", 1, None, "malformed"),
        ("I cannot answer that", 1, None, "refused"),
        ("", 2, None, "malformed"),
    ],
)
def test_parse_detection(reply, n, value, status):
    parsed = parse_detection(reply, n)
    assert (parsed.value, parsed.status) == (value, status)


def test_detection_score_by_hand():
    truth = [1, 1, 1, 0, 0, 0, 0, 0]
    predicted = [1, 0, 1, 0, 0, 1, -1, 0]  # one unanswered (-1): left out
    score = detection_score(np.array(truth), np.array(predicted))
    assert (score.tp, score.fn, score.tn, score.fp) == (2, 1, 3, 1)
    assert score.balanced_accuracy == pytest.approx(0.5 * (2 / 3 + 3 / 4))  # 0.70833
    assert detection_score(np.array([1, 1, 0, 0, 0, 0]), np.zeros(6)).balanced_accuracy == 0.5  # always "no"
    assert detection_score(np.array([1, 0, 0]), np.array([1, 0, 0])).balanced_accuracy == 1.0
    assert detection_score(np.array([1, 0]), np.array([0, 1])).balanced_accuracy == 0.0
    assert math.isnan(detection_score(np.array([1, 1]), np.array([1, 1])).balanced_accuracy)  # no negatives
    assert math.isnan(detection_score(np.array([1, 0]), np.array([-1, -1])).balanced_accuracy)  # nothing answered
    with pytest.raises(ValueError, match="shape"):
        detection_score(np.array([1, 0]), np.array([1]))


def _examples(seed, latent, explain, active, inactive):
    """Example rows as latent_examples writes them; text pieces are whole tokens here."""
    rows = []
    for role, texts in (("explain", explain), ("active", active), ("inactive", inactive)):
        for i, text in enumerate(texts):
            tokens = text.split(" ")
            tokens = [tokens[0]] + [" " + t for t in tokens[1:]]
            acts = [2.0 if KEYWORD in t else 0.0 for t in tokens] if role != "inactive" else [0.0] * len(tokens)
            rows.append({"seed": seed, "latent": latent, "role": role, "quantile": -1, "window": i,
                         "activation": max(acts), "tokens": list(range(len(tokens))), "token_strs": tokens, "token_acts": acts})
    return rows


@pytest.mark.parametrize("per_prompt", [1, 3])
def test_explain_and_score_over_http_with_hand_computed_scores(monkeypatch, per_prompt):
    """The `keyword` model answers 1 exactly for texts containing LORD, so the scores follow by hand."""
    monkeypatch.setenv("SAESEEDS_TEST_KEY", API_KEY)
    rows = _examples(0, 5, ["the LORD said", "O LORD my God"], ["the LORD is good", "fear the LORD", "God is good"],
                     ["a cat sat", "the LORD of hosts", "water flows", "bread"])
    # latent 7 of seed 1: every active text has the keyword, no inactive one has it: perfect score.
    rows += _examples(1, 7, ["LORD God"], ["LORD of hosts", "the LORD"], ["fish", "birds fly"])
    server = Server()
    try:
        backend = OpenAIBackend(base_url=server.url, model="keyword", api_key_env="SAESEEDS_TEST_KEY")
        table = explain_and_score(pd.DataFrame(rows), [(0, 5), (1, 7), (1, 9)], backend, AutointerpConfig(examples_per_prompt=per_prompt))
    finally:
        server.close()
    table = table.set_index(["seed", "latent"])
    first, second, empty = table.loc[(0, 5)], table.loc[(1, 7)], table.loc[(1, 9)]
    assert first.explanation == f"the word {KEYWORD}." and first.explain_status == OK
    # seed 0 latent 5: active 3 (2 contain LORD), inactive 4 (1 contains LORD): TPR 2/3, TNR 3/4.
    assert (first.tp, first.fn, first.tn, first.fp) == (2, 1, 3, 1)
    assert first.score == pytest.approx(0.5 * (2 / 3 + 3 / 4)) and first.n_answered == 7 and first.failed_prompts == 0
    assert (second.score, second.n_active, second.n_inactive) == (1.0, 2, 2)
    assert empty.explain_status == "no_examples" and math.isnan(empty.score) and empty.n_answered == 0
    # one explanation prompt per latent with examples, then ceil(texts / per_prompt) detection prompts each
    assert server.count("keyword") == 2 + math.ceil(7 / per_prompt) + math.ceil(4 / per_prompt)


def test_refused_explanations_and_unparsable_detections_are_counted_not_scored(monkeypatch):
    monkeypatch.setenv("SAESEEDS_TEST_KEY", API_KEY)
    rows = pd.DataFrame(_examples(0, 1, ["the LORD"], ["LORD", "the LORD"], ["cat"]))
    server = Server()
    try:
        # `refuse` answers with an API refusal: no explanation, so nothing is scored.
        refused = explain_and_score(rows, [(0, 1)], OpenAIBackend(base_url=server.url, model="refuse", api_key_env="SAESEEDS_TEST_KEY"),
                                    AutointerpConfig()).iloc[0]
        junk = explain_and_score(rows, [(0, 1)], OpenAIBackend(base_url=server.url, model="junk-detection", api_key_env="SAESEEDS_TEST_KEY"),
                                 AutointerpConfig(examples_per_prompt=2)).iloc[0]
    finally:
        server.close()
    assert refused.explain_status == "refused" and refused.explanation is None
    assert math.isnan(refused.score) and refused.n_answered == 0 and server.count("refuse") == 1
    assert junk.explain_status == OK and junk.failed_prompts == 2 and junk.n_answered == 0
    assert (junk.n_active, junk.n_inactive) == (2, 1) and math.isnan(junk.score)

"""Autointerp as in Paulo et al. (2024): explain a latent from its top-activating examples, then score the
explanation by detection (does a model, shown only the explanation, tell active from non-active contexts?).

Prompts and parsers are pure functions so tests can check them on hand-written answers; `explain_and_score`
runs them through any `saeseeds.autointerp.llm` backend. The score is balanced accuracy over the examples whose
answer could be parsed, so a class imbalance or a model that answers "no" to everything scores 0.5.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from saeseeds.autointerp.llm import OK, REFUSED, Messages

EXPLAIN_SYSTEM = (
    "You are a meticulous researcher studying one feature of a language model. You see short texts in which "
    "the feature is active; the tokens where it fires are marked between << and >>. Find what the marked tokens "
    "and their contexts have in common."
)
EXPLAIN_INSTRUCTION = 'What does the feature respond to? Answer with one short sentence that starts with "Explanation:".'
DETECT_SYSTEM = (
    "You are a meticulous researcher checking an explanation of one feature of a language model. You see texts; "
    "decide for each whether the feature, as explained, would be active somewhere in it."
)
REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "i can not", "as an ai", "i am unable", "i'm unable")
_ANSWERS = {"1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0}


def highlight(tokens: list[str], acts: list[float] | np.ndarray) -> str:
    """Returns the text of `tokens` with every run of active tokens (activation > 0) between << and >>."""
    out, inside = [], False
    for token, act in zip(tokens, acts):
        active = act > 0
        if active and not inside:
            stripped = token.lstrip()
            out.append(token[: len(token) - len(stripped)] + "<<" + stripped)
        elif not active and inside:
            out.append(">>" + token)
        else:
            out.append(token)
        inside = active
    return "".join(out) + (">>" if inside else "")


def explanation_prompt(examples: list[str]) -> Messages:
    """Returns the chat prompt asking for a one-sentence explanation of highlighted `examples`."""
    listing = "\n".join(f"Example {i}: {text}" for i, text in enumerate(examples, 1))
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": f"{listing}\n\n{EXPLAIN_INSTRUCTION}"}]


def detection_prompt(explanation: str, texts: list[str]) -> Messages:
    """Returns the chat prompt asking whether each of `texts` matches `explanation`.

    One text asks for Yes or No, which small models answer reliably; several ask for a list of 1s and 0s,
    as Paulo et al. do to share one prompt among many examples.
    """
    if len(texts) == 1:
        ask = f"Explanation: {explanation}\n\nText: {texts[0]}\n\nIs the feature active in this text? Answer Yes or No."
    else:
        listing = "\n".join(f"Text {i}: {t}" for i, t in enumerate(texts, 1))
        example = ", ".join(["1", "0"] * (len(texts) // 2) + ["1"] * (len(texts) % 2))
        ask = (
            f"Explanation: {explanation}\n\n{listing}\n\nFor each of the {len(texts)} texts answer 1 if the feature is "
            f"active in it, else 0. Reply with the list only, like [{example}]."
        )
    return [{"role": "system", "content": DETECT_SYSTEM}, {"role": "user", "content": ask}]


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: `value` when status is "ok"; else status says why there is none."""

    value: object
    status: str = OK
    detail: str = ""


def _refused(text: str) -> bool:
    return text.strip().lower().startswith(REFUSALS)


def parse_explanation(text: str | None) -> Parsed:
    """Returns the explanation sentence in a reply: the text after "Explanation:", else the first line."""
    if text is None or not text.strip():
        return Parsed(None, "malformed", "empty reply")
    if _refused(text):
        return Parsed(None, REFUSED, text.strip()[:200])
    match = re.search(r"explanation\s*[:\-]\s*(.+)", text, flags=re.IGNORECASE)
    lines = (match.group(1) if match else text).strip().splitlines() or [""]
    # Small models sometimes repeat the prefix ("Explanation: Explanation: ..."); what follows the last one counts.
    line = re.sub(r"^(?:explanation\s*[:\-]\s*)+", "", lines[0].strip(), flags=re.IGNORECASE).strip().strip("\"'` ")
    line = line.replace("<<", "").replace(">>", "")
    if not line:
        return Parsed(None, "malformed", f"no sentence in {text[:200]!r}")
    return Parsed(line)


def parse_detection(text: str | None, n: int) -> Parsed:
    """Returns the n predictions (0/1) in a reply: a bracketed list of n answers, or for n == 1 a leading Yes/No."""
    if text is None or not text.strip():
        return Parsed(None, "malformed", "empty reply")
    if _refused(text):
        return Parsed(None, REFUSED, text.strip()[:200])
    for inside in re.findall(r"\[([^\[\]]*)\]", text):
        items = [item.strip().strip("\"'").lower() for item in inside.split(",") if item.strip()]
        if len(items) == n and all(item in _ANSWERS for item in items):
            return Parsed([_ANSWERS[item] for item in items])
    if n == 1:
        first = re.match(r"\W*(\w+)", text)
        if first and first.group(1).lower() in _ANSWERS:
            return Parsed([_ANSWERS[first.group(1).lower()]])
        # Small models answer in a sentence ("The feature is not active in this text."): read its first verdict.
        verdict = re.search(r"\b(?:is|are)\s+(not\s+)?(active|inactive|passive)\b", text, flags=re.IGNORECASE)
        if verdict:
            return Parsed([int(not verdict.group(1) and verdict.group(2).lower() == "active")])
    return Parsed(None, "malformed", f"no list of {n} answers (1/0) in {text[:200]!r}")


@dataclass(frozen=True)
class DetectionScore:
    """Confusion counts over the answered examples and their balanced accuracy (NaN without both classes)."""

    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def balanced_accuracy(self) -> float:
        positives, negatives = self.tp + self.fn, self.tn + self.fp
        if positives == 0 or negatives == 0:
            return float("nan")
        return 0.5 * (self.tp / positives + self.tn / negatives)


def detection_score(truth: np.ndarray, predicted: np.ndarray) -> DetectionScore:
    """Returns the confusion counts of `predicted` (1/0, or -1 for no answer, which is left out) against `truth`."""
    truth, predicted = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has shape {truth.shape}, predictions {predicted.shape}")
    answered = predicted >= 0
    t, p = truth[answered].astype(bool), predicted[answered].astype(bool)
    return DetectionScore(tp=int((t & p).sum()), fn=int((t & ~p).sum()), tn=int((~t & ~p).sum()), fp=int((~t & p).sum()))


@dataclass(frozen=True)
class AutointerpConfig:
    """How many examples the explainer and the scorer see, and how long their answers may be."""

    examples_per_prompt: int = 1
    """Texts per detection prompt: 1 (Yes/No) suits small local models; served large models take 5-10."""
    explain_max_tokens: int = 48
    detect_max_tokens: int = 8
    """Reply length per detection prompt with one text; a list of n answers gets 4n + 4 tokens."""
    seed: int = 0
    """Seed of the order in which active and non-active texts are mixed into detection prompts."""


def explain_and_score(
    examples: pd.DataFrame, latents: list[tuple[int, int]], backend, cfg: AutointerpConfig, *, log: logging.Logger | None = None
) -> pd.DataFrame:
    """Returns one row per (seed, latent) of `latents`: its explanation from `examples` (the table
    saeseeds.autointerp.examples writes) and its detection score, with the confusion counts and how many
    replies failed or could not be parsed. A latent without activating examples gets no prompt."""
    log = log or logging.getLogger("saeseeds.autointerp.explain_score")
    empty = examples.iloc[:0]
    groups = {key: frame for key, frame in examples.groupby(["seed", "latent"], sort=True)}
    groups = {(int(s), int(l)): groups.get((s, l), empty) for s, l in latents}
    asked, prompts, rows = [], [], []
    for seed, latent in groups:
        top = groups[(seed, latent)].query("role == 'explain'").sort_values("activation", ascending=False)
        rows.append({"seed": seed, "latent": latent, "n_explain_examples": len(top), "explanation": None,
                     "explain_status": "no_examples", "explain_detail": "no activating example in the searched tokens"})
        if len(top):
            asked.append(len(rows) - 1)
            prompts.append(explanation_prompt([highlight(list(t), a) for t, a in zip(top["token_strs"], top["token_acts"])]))
    start = time.perf_counter()
    for index, reply in zip(asked, backend.generate(prompts, max_tokens=cfg.explain_max_tokens)):
        parsed = parse_explanation(reply.text) if reply.status == OK else Parsed(None, reply.status, reply.detail)
        rows[index].update(explanation=parsed.value, explain_status=parsed.status, explain_detail=parsed.detail)
    table = pd.DataFrame(rows, columns=["seed", "latent", "n_explain_examples", "explanation", "explain_status", "explain_detail"])
    log.info("explanations: %d of %d latents ok (%d asked) in %.1f s", int((table.explain_status == OK).sum()), len(table),
             len(prompts), time.perf_counter() - start)
    return _score(table, groups, backend, cfg, log)


def _score(table: pd.DataFrame, groups, backend, cfg: AutointerpConfig, log: logging.Logger) -> pd.DataFrame:
    n_per = cfg.examples_per_prompt
    max_tokens = cfg.detect_max_tokens if n_per == 1 else 4 * n_per + 4
    jobs, prompts = [], []  # (row index, truth of each text in the prompt)
    for row in table.itertuples():
        if row.explain_status != OK:
            continue
        scored = groups[(row.seed, row.latent)].query("role != 'explain'")
        order = np.random.default_rng([cfg.seed, row.seed, row.latent]).permutation(len(scored))
        texts = ["".join(t) for t in scored["token_strs"].iloc[order]]
        truth = (scored["role"].iloc[order] == "active").to_numpy()
        for start in range(0, len(texts), n_per):
            jobs.append((row.Index, truth[start : start + n_per]))
            prompts.append(detection_prompt(row.explanation, texts[start : start + n_per]))
    start = time.perf_counter()
    replies = backend.generate(prompts, max_tokens=max_tokens)
    seconds = time.perf_counter() - start
    truth_of = {i: [] for i in table.index}
    pred_of = {i: [] for i in table.index}
    failed = dict.fromkeys(table.index, 0)
    for (index, truth), reply in zip(jobs, replies):
        parsed = parse_detection(reply.text, len(truth)) if reply.status == OK else Parsed(None, reply.status)
        truth_of[index].extend(truth.tolist())
        pred_of[index].extend(parsed.value if parsed.status == OK else [-1] * len(truth))
        failed[index] += parsed.status != OK
    scores = [detection_score(np.asarray(truth_of[i], dtype=np.int64), np.asarray(pred_of[i], dtype=np.int64)) for i in table.index]
    table["n_active"] = [int(np.sum(truth_of[i])) for i in table.index]
    table["n_inactive"] = [len(truth_of[i]) - int(np.sum(truth_of[i])) for i in table.index]
    table["n_answered"] = [int(np.sum(np.asarray(pred_of[i]) >= 0)) for i in table.index]
    table["failed_prompts"] = [failed[i] for i in table.index]
    for name in ("tp", "fn", "tn", "fp"):
        table[name] = [getattr(s, name) for s in scores]
    table["score"] = [s.balanced_accuracy for s in scores]
    log.info(
        "detection: %d prompts in %.1f s, %d failed or unparsed; mean score %.3f over %d latents",
        len(prompts), seconds, sum(failed.values()), float(np.nanmean(table.score)) if table.score.notna().any() else float("nan"),
        int(table.score.notna().sum()),
    )
    return table

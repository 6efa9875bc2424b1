"""The latent browser of one SAE set: every latent of every seed, its partners in the other seeds,
its contexts and histogram, its explanation, as a static folder that opens from file:// or any web server.

Layout of the folder (all data as JavaScript files that call `SAESEEDS.register(name, json)`, because
Chromium refuses fetch() of local files from a file:// page, while <script src> works from both):

    index.html  browser.js  browser.css      the page (copied from saeseeds/browser/template)
    data/summary.js                          the set: seeds, latents per seed, only-in-base curves, notes
    data/seed{S}/table.js                    seed S's latent table, one array per column
    data/seed{S}/block-{K:04d}.js            latents K*block .. (K+1)*block-1: partners, contexts, histogram

A seed's table is loaded when the page shows that seed, a block when one of its latents is opened, so
the first paint reads the summary and one table whatever the number of latents. Every string in the
data (token strings, explanations) is inserted by browser.js as text, never as markup.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.common.atomic import as_output_error, remove_stale_temps
from saeseeds.browser.contexts import LatentScan, scan_latents
from saeseeds.browser.settings import TEMPLATE_FILES, ContextConfig
from saeseeds.sae.coder import load_sae
from saeseeds.matching.matches_file import read_matches
from saeseeds.stats.orphans import b_view
from saeseeds.activations.store import StoreError
from saeseeds.errors import BrowserError  # noqa: F401 (raised here; importable from here too)

BLOCK = 256
"""Latents per block file: a few tens of KB each, so opening a latent reads one small file."""


@dataclass
class SeedData:
    """Everything the browser shows about one seed's latents."""

    table: pd.DataFrame
    """One row per latent (index = latent id): n_shared, enc_cos, dec_cos, maxcos, firing, explanation, score, subst."""
    partners: dict[int, pd.DataFrame]
    """Other seed -> one row per latent of this seed: enc_partner, enc_cos, dec_partner, dec_cos, maxcos, shared."""
    examples: dict[int, list[dict]] = field(default_factory=dict)
    """Latent -> its contexts: {tokens, acts, source}."""
    histograms: dict[int, dict] = field(default_factory=dict)
    """Latent -> {max, counts, active}."""


def pair_views(df: pd.DataFrame, meta: dict, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (seed a's view, seed b's view) of one pair's matches: per latent its encoder and decoder
    partner and cosine, max-cos and `shared`.

    Seed b's view is the same two matchings read backwards (`orphans.b_view`); the matches record max-cos
    only for seed a's latents, so b's is NaN. When the two differ in size (external sets) a latent of the
    larger side may have no partner: -1, NaN.
    """
    n_b = int(meta.get("n_b", meta.get("n", len(df))))
    view = b_view(df, n_b, meta["threshold"], meta["definition"], where)
    a = pd.DataFrame({
        "enc_partner": df["enc_partner"].to_numpy(np.int64), "enc_cos": df["enc_cos"].to_numpy(np.float64),
        "dec_partner": df["dec_partner"].to_numpy(np.int64), "dec_cos": df["dec_cos"].to_numpy(np.float64),
        "maxcos": df["dec_maxcos"].to_numpy(np.float64), "shared": df["shared"].to_numpy().astype(bool),
    })
    b = pd.DataFrame({
        "enc_partner": view["enc_partner"], "enc_cos": view["enc_cos"].astype(np.float64),
        "dec_partner": view["dec_partner"], "dec_cos": view["dec_cos"].astype(np.float64),
        "maxcos": np.full(n_b, np.nan),
        "shared": view["shared"],
    })
    return a, b


def seed_tables(seeds: list[int], matches: dict[tuple[int, int], tuple[pd.DataFrame, dict]], latents: pd.DataFrame,
                autointerp: dict[int, pd.DataFrame] | None = None,
                substitution: dict[int, pd.DataFrame] | None = None) -> dict[int, SeedData]:
    """Returns SeedData per seed (tables and partners) from every pair's (matches, metadata), the orphans'
    per-latent table (base, latent, n_shared, firing_frequency), autointerp's per-seed explanations and the
    substitution test's per-latent tables (`saeseeds.functional.substitution`; `score_partner` becomes the `subst` column).

    The table's cosines are means over the other seeds of the matched cosines; max-cos is the largest
    decoder max-cos the matches record (pairs where this seed comes first), NaN where none does.
    """
    seeds = sorted(seeds)
    partners: dict[int, dict[int, pd.DataFrame]] = {s: {} for s in seeds}
    for a, b in ((a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]):
        if (a, b) not in matches:
            raise BrowserError(f"matches of seeds {a} and {b} missing")
        df, meta = matches[(a, b)]
        partners[a][b], partners[b][a] = pair_views(df, meta, where=f"matches seed{a}-seed{b}")
    out = {}
    for s in seeds:
        base = latents[latents["base"] == s].sort_values("latent")
        n = len(next(iter(partners[s].values())))
        if len(base) != n or not np.array_equal(base["latent"].to_numpy(), np.arange(n)):
            raise BrowserError(f"orphans latents table: seed {s} has {len(base)} rows, its matches {n} latents")
        views = [partners[s][t] for t in seeds if t != s]
        maxcos = np.vstack([v["maxcos"].to_numpy() for v in views])
        known = ~np.isnan(maxcos)
        table = pd.DataFrame({
            "n_shared": base["n_shared"].to_numpy(np.int64),
            "enc_cos": np.nanmean([v["enc_cos"].to_numpy() for v in views], axis=0),
            "dec_cos": np.nanmean([v["dec_cos"].to_numpy() for v in views], axis=0),
            "maxcos": np.where(known.any(0), np.where(known, maxcos, -np.inf).max(0), np.nan),
            "firing": base["firing_frequency"].to_numpy(np.float64),
            "explanation": pd.Series([None] * n, dtype=object),
            "score": np.full(n, np.nan),
            "subst": np.full(n, np.nan),
        })
        subst = (substitution or {}).get(s)
        if subst is not None and len(subst):
            ids = subst["latent"].to_numpy(np.int64)
            if ids.min() < 0 or ids.max() >= n:
                raise BrowserError(f"substitution table of seed {s}: latent ids outside 0..{n - 1}")
            table.loc[ids, "subst"] = subst["score_partner"].to_numpy(np.float64)
        scores = (autointerp or {}).get(s)
        if scores is not None and len(scores):
            ids = scores["latent"].to_numpy(np.int64)
            if ids.min() < 0 or ids.max() >= n:
                raise BrowserError(f"autointerp of seed {s}: latent ids outside 0..{n - 1}")
            table.loc[ids, "explanation"] = scores["explanation"].to_numpy(object)
            table.loc[ids, "score"] = scores["score"].to_numpy(np.float64)
        out[s] = SeedData(table=table, partners=partners[s])
    return out


def add_scan(data: SeedData, scan: LatentScan, token_strs: list[list[str]]) -> None:
    """Adds a LatentScan's histograms and contexts (token strings per context, in scan order) to `data`."""
    fired = np.flatnonzero(scan.n_active)
    for j, top, counts, active in zip(fired.tolist(), _rounded(scan.max_act[fired]), scan.counts[fired].tolist(), scan.n_active[fired].tolist()):
        data.histograms[j] = {"max": top, "counts": counts, "active": active}
    for j, strs, acts in zip(scan.ctx_latent.tolist(), token_strs, _rounded(scan.ctx_acts, 3)):
        data.examples.setdefault(j, []).append({"tokens": strs, "acts": acts, "source": "scan"})


def _rounded(values: np.ndarray, digits: int = 4) -> list:
    """Returns `values` rounded as (nested) lists; in 1-D, NaN as None and zeros as ints (shorter JSON)."""
    values = np.round(np.asarray(values, dtype=np.float64), digits)
    out = values.tolist()
    if values.ndim == 1:
        return [None if v != v else (int(v) if v == 0 else v) for v in out]
    return out


def add_autointerp_examples(data: SeedData, examples: pd.DataFrame, per_latent: int) -> None:
    """Replaces the contexts of the latents autointerp explained by its own top windows (role `explain`,
    the ones the explainer saw), strongest first, at most `per_latent` each."""
    top = examples[examples["role"] == "explain"].sort_values(["latent", "activation"], ascending=[True, False])
    for latent, group in top.groupby("latent", sort=True):
        data.examples[int(latent)] = [
            {"tokens": [str(t) for t in strs], "acts": [_num(a) for a in acts], "source": "autointerp"}
            for strs, acts in zip(group["token_strs"].head(per_latent), group["token_acts"].head(per_latent))
        ]


def only_in_base_curves(subsets: pd.DataFrame) -> dict[str, list[list[float]]]:
    """Returns per base seed (as a string key) [[size, mean only-in-base over the subsets of that size containing it]]."""
    curves = subsets.groupby(["base", "size"], sort=True)["only_in_base"].mean()
    out: dict[str, list[list[float]]] = {}
    for (base, size), value in curves.items():
        out.setdefault(str(int(base)), []).append([int(size), _num(value)])
    return out


def _num(x, digits: int = 4):
    """Returns x rounded for the page, or None for NaN (JSON has no NaN)."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits)


def _script(name: str, payload) -> str:
    # ASCII-only JSON is a valid JavaScript expression (no raw U+2028/2029), and in a file loaded by
    # <script src> a "</script>" inside a string is just text: nothing here is parsed as HTML.
    return f"SAESEEDS.register({json.dumps(name)},{json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(',', ':'))});\n"


def _table_payload(table: pd.DataFrame) -> dict:
    return {
        "n": len(table),
        "n_shared": table["n_shared"].astype(int).tolist(),
        **{c: _rounded(table[c].to_numpy()) for c in ("enc_cos", "dec_cos", "maxcos", "score", "subst")},
        "firing": [None if v != v else float(f"{v:.4g}") for v in table["firing"].tolist()],  # rare latents keep their digits
        "explanation": [None if e is None or (isinstance(e, float) and math.isnan(e)) else str(e) for e in table["explanation"]],
    }


def _block_payload(seed: int, data: SeedData, lo: int, hi: int) -> dict:
    """Returns the data of latents lo..hi-1: per latent its partners [seed, encoder partner, cosine, decoder
    partner, cosine, max-cos, shared 0/1] in each other seed, contexts and histogram."""
    columns = []
    for t in sorted(data.partners):
        view = data.partners[t].iloc[lo:hi]
        columns.append((t, view["enc_partner"].tolist(), _rounded(view["enc_cos"].to_numpy()), view["dec_partner"].tolist(),
                        _rounded(view["dec_cos"].to_numpy()), _rounded(view["maxcos"].to_numpy()), view["shared"].astype(int).tolist()))
    latents = []
    for i, j in enumerate(range(lo, hi)):
        latents.append({
            "partners": [[c[0], c[1][i], c[2][i], c[3][i], c[4][i], c[5][i], c[6][i]] for c in columns],
            "examples": data.examples.get(j, []),
            "hist": data.histograms.get(j),
        })
    return {"seed": seed, "first": lo, "latents": latents}


def write_browser(folder: str | Path, seeds: dict[int, SeedData], *, label: str, curves: dict, threshold: float,
                  definition: str, notes: list[str], scan_tokens: int | None, contexts_note: str = "",
                  block: int = BLOCK) -> Path:
    """Returns `folder` after writing the whole browser into a temporary sibling and moving it into place
    (a killed job leaves the old folder or none, never half of one)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)
        (tmp / "data").mkdir(parents=True)
        template = resources.files("saeseeds.browser") / "template"
        for name in TEMPLATE_FILES:
            text = (template / name).read_text(encoding="utf-8")
            if name == "index.html":
                text = text.replace("{{LABEL}}", html.escape(label)).replace("{{PATH}}", html.escape(str(folder / "index.html")))
            (tmp / name).write_text(text, encoding="utf-8")
        summary = {
            "label": label, "threshold": threshold, "definition": definition, "block": block, "notes": notes,
            "scanned": scan_tokens is not None, "scan_tokens": scan_tokens, "contexts_note": contexts_note,
            "seeds": [{"seed": s, "n": len(d.table)} for s, d in sorted(seeds.items())], "curves": curves,
        }
        (tmp / "data" / "summary.js").write_text(_script("summary", summary), encoding="ascii")
        for s, data in sorted(seeds.items()):
            d = tmp / "data" / f"seed{s}"
            d.mkdir()
            (d / "table.js").write_text(_script(f"table/{s}", _table_payload(data.table)), encoding="ascii")
            for k, lo in enumerate(range(0, len(data.table), block)):
                payload = _block_payload(s, data, lo, min(lo + block, len(data.table)))
                (d / f"block-{k:04d}.js").write_text(_script(f"block/{s}/{k}", payload), encoding="ascii")
        old = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-old")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise as_output_error(folder, err) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build_browser(
    folder: str | Path, *, label: str, matches: dict[tuple[int, int], str | Path], latents: str | Path, subsets: str | Path,
    checkpoints: dict[int, str | Path], store=None, decode=None, autointerp_scores: dict[int, str | Path] | None = None,
    autointerp_examples: dict[int, str | Path] | None = None, substitution: dict[int, str | Path] | None = None,
    cfg: ContextConfig | None = None, device: str = "cpu", log: logging.Logger | None = None,
) -> Path:
    """Returns `folder` after building the browser of one SAE set from the study's files: matches per seed
    pair (a < b), the orphans' latents and subsets tables, each seed's checkpoint folder, the site's
    cached store (None: no contexts or histograms), a token decoder (None: histograms only), and
    autointerp's explanations and examples per seed where autointerp ran, and the substitution test's table
    per seed where it ran (the functional stage, seed a of the set's first pair)."""
    log = log or logging.getLogger("saeseeds.browser.build")
    cfg = cfg or ContextConfig()
    pairs = {}
    threshold = definition = None
    for (a, b), path in sorted(matches.items()):
        df, meta = read_matches(path)
        pairs[(a, b)] = (df, meta)
        threshold, definition = meta["threshold"], meta["definition"]
    seeds = sorted({s for pair in pairs for s in pair})
    scores = {int(s): pd.read_parquet(p) for s, p in (autointerp_scores or {}).items()}
    substituted = {int(s): pd.read_parquet(p) for s, p in (substitution or {}).items()}
    data = seed_tables(seeds, pairs, pd.read_parquet(latents), scores, substituted)
    notes = [f"autointerp explained {sum(len(t) for t in scores.values())} latents of seeds {', '.join(map(str, sorted(scores)))}"] if scores else []
    notes += [f"substitution scores of every latent of seed {s}: its decoder partner swapped in (1 = does its job, 0 = no better "
              "than deleting it)" for s in sorted(substituted)]
    scan_tokens, contexts_note = None, ""
    if store is None:
        contexts_note = ("No contexts or histograms: this set has no cached activations to encode (activations computed on the fly, "
                         "or an external set, whose imported checkpoints hold directions only).")
    else:
        try:
            token_ids = store.token_ids()
        except StoreError:
            token_ids = None
        context = token_ids.shape[1] if token_ids is not None else max(1, int(store.attrs.get("context_length", 1)))
        n_rows = min(cfg.tokens, store.n_train) // context * context
        if n_rows == 0:
            raise BrowserError(f"browser.tokens={cfg.tokens} is less than one context ({context} tokens) of {store.path}")
        rows = np.asarray(store.array[:n_rows], dtype=np.float32)
        flat = token_ids.reshape(-1)[:n_rows] if token_ids is not None and decode is not None else None
        if flat is None:
            contexts_note = ("No contexts: this site's store keeps no token ids (synthetic activations, or a cache written "
                             "before saeseeds kept them); histograms only.")
        scan_tokens = n_rows
        for s in seeds:
            start = time.perf_counter()
            scan = scan_latents(load_sae(checkpoints[s], device=device), rows, context, cfg)
            strings: list[list[str]] = []
            if flat is not None:
                windows = flat[scan.ctx_start[:, None] + np.arange(scan.ctx_acts.shape[1])] if len(scan.ctx_start) else np.zeros((0, 0), np.int64)
                ids, inverse = np.unique(windows, return_inverse=True)
                vocab = decode(ids) if windows.size else {}
                strings = np.array([vocab[int(t)] for t in ids] or [""], dtype=object)[inverse.reshape(windows.shape)].tolist()
            else:
                scan = dataclasses.replace(scan, ctx_latent=scan.ctx_latent[:0])
            add_scan(data[s], scan, strings)
            log.info("seed %d: %d latents fired in %d tokens, %d contexts, %.1f s", s, int((scan.n_active > 0).sum()), n_rows,
                     len(scan.ctx_latent), time.perf_counter() - start)
        notes.append(f"contexts and histograms from the first {n_rows:,} cached tokens")
    for s, path in (autointerp_examples or {}).items():
        add_autointerp_examples(data[int(s)], pd.read_parquet(path), cfg.examples)
    curves = only_in_base_curves(pd.read_parquet(subsets))
    out = write_browser(folder, data, label=label, curves=curves, threshold=threshold, definition=definition, notes=notes,
                        scan_tokens=scan_tokens, contexts_note=contexts_note)
    log.info("browser of %s: %d seeds, %d latents, %.1f MB in %s", label, len(seeds), sum(len(d.table) for d in data.values()),
             folder_bytes(out) / 1e6, out)
    return out


def folder_bytes(folder: str | Path) -> int:
    """Returns the total size of the files under `folder`."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())

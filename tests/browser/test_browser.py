"""The latent browser: data assembly checked by brute force, and the page itself in a real Chromium
(sorting, filters, routing, shaded tokens, hostile strings shown as text, no request leaving the folder)."""

import http.server
import json
import re
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.browser.build import BrowserError, build_browser, folder_bytes, pair_views, seed_tables
from saeseeds.browser.contexts import ContextConfig, scan_latents
from saeseeds.autointerp.examples import latent_activations
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.matches_file import read_matches, write_matches
from saeseeds.stats.orphans import latent_table, pair_masks_from_files, subset_table
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.activations.store import StoreWriter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE_TOKEN = "<script>alert(1)</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE_EXPLANATION = 'Fires on <b>bold</b> <img src=x onerror="window.__pwned=2"> & "quotes"'


# ---- small real data: SAEs whose seeds share some latents, real matchings, orphans, a store with tokens ----

def write_set(root: Path, *, n=24, d=16, seeds=(0, 1, 2), context=16, contexts=24, hostile=True) -> dict:
    """Writes a small SAE set the way the workflow lays it out and returns build_browser's arguments.

    Seed s keeps the base dictionary's first n/2 rows (permuted, slightly perturbed) and draws the rest
    afresh, so about half the latents are shared and half are orphans."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    checkpoints, weights = {}, {}
    for s in seeds:
        r = np.random.default_rng(100 + s)
        w = np.where(np.arange(n)[:, None] < n // 2, base + 0.05 * r.normal(size=(n, d)), r.normal(size=(n, d))).astype(np.float32)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        w = w[r.permutation(n)] if s else w
        sae = SparseCoder(d, SaeConfig(arch="topk", num_latents=n, k=3), seed=s)
        with torch.no_grad():
            sae.encoder.weight.copy_(torch.from_numpy(w))
            sae.W_dec.copy_(torch.from_numpy(w))
        checkpoints[s] = root / f"seed{s}"
        sae.save_to_disk(checkpoints[s])
        weights[s] = w
    matches = {}
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            df, meta = match_dictionaries(weights[a], weights[a], weights[b], weights[b])
            matches[(a, b)] = root / "matches" / f"seed{a}-seed{b}.parquet"
            write_matches(df, meta, matches[(a, b)])
    masks = pair_masks_from_files(matches)
    firing = {s: rng.uniform(0, 0.1, n) for s in seeds}
    write_parquet(latent_table(masks, firing), root / "orphans" / "latents.parquet")
    write_parquet(subset_table(masks), root / "orphans" / "subsets.parquet")
    rows = rng.normal(size=(context * contexts, d)).astype(np.float32)
    writer = StoreWriter(root / "activations.zarr", len(rows), d, dtype="float32")
    writer.append(rows)
    writer.add_token_ids((np.arange(len(rows)) % 50).reshape(-1, context))
    store = writer.finish({"model": "m", "revision": "main", "dataset": "d", "hook": "h", "n_train": len(rows) - 4 * context,
                           "n_heldout": 4 * context})
    vocab = {i: f" w{i}" for i in range(50)}
    vocab[3] = "\n"
    if hostile:  # token strings and an explanation as a corpus and a model might produce them
        vocab[7], vocab[8] = HOSTILE_TOKEN, HOSTILE_IMG
    scores = pd.DataFrame({"seed": seeds[0], "latent": [0, 1, 2], "explanation": [HOSTILE_EXPLANATION if hostile else "Fires on w7", "Counts sheep", None],
                           "score": [0.9, 0.55, np.nan]})
    write_parquet(scores, root / "autointerp" / f"seed{seeds[0]}.parquet")
    return dict(label="m/d/h/topk-test", matches=matches, latents=root / "orphans" / "latents.parquet",
                subsets=root / "orphans" / "subsets.parquet", checkpoints=checkpoints, store=store,
                decode=lambda ids: {int(i): vocab[int(i)] for i in ids},
                autointerp_scores={seeds[0]: root / "autointerp" / f"seed{seeds[0]}.parquet"},
                cfg=ContextConfig(examples=3, window=6, tokens=context * 16, batch_rows=64))


@pytest.fixture(scope="module")
def small_browser(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    args = write_set(root)
    folder = build_browser(root / "browser", **args)
    return folder, args


# ---- the data, by brute force ----

def test_pair_views_read_the_matching_backwards(tmp_path):
    args = write_set(tmp_path, hostile=False)
    df, meta = read_matches(args["matches"][(0, 1)])
    a, b = pair_views(df, meta, where="test")
    n = len(df)
    for k in range(n):  # b's partner of a's partner is a's latent itself, with the same cosine
        j = df.enc_partner[k]
        assert b.enc_partner[j] == k and b.enc_cos[j] == pytest.approx(df.enc_cos[k])
        j = df.dec_partner[k]
        assert b.dec_partner[j] == k and b.dec_cos[j] == pytest.approx(df.dec_cos[k])
    assert a["maxcos"].notna().all() and b["maxcos"].isna().all()  # the file records max-cos for seed a only
    assert a.shared.sum() == b.shared.sum() > 0


def test_seed_tables_average_the_other_seeds_and_carry_explanations(tmp_path):
    args = write_set(tmp_path, hostile=False)
    pairs = {k: read_matches(p) for k, p in args["matches"].items()}
    latents = pd.read_parquet(args["latents"])
    scores = pd.read_parquet(args["autointerp_scores"][0])
    data = seed_tables([0, 1, 2], pairs, latents, {0: scores})
    for s in (0, 1, 2):
        t = data[s].table
        views = data[s].partners
        assert sorted(views) == [x for x in (0, 1, 2) if x != s]
        for j in range(len(t)):
            assert t.n_shared[j] == sum(bool(v.shared[j]) for v in views.values())
            assert t.dec_cos[j] == pytest.approx(np.mean([v.dec_cos[j] for v in views.values()]))
        assert (t.n_shared.to_numpy() == latents[latents.base == s].n_shared.to_numpy()).all()
    assert data[0].table.explanation[1] == "Counts sheep" and data[0].table.score[0] == 0.9
    assert data[1].table.explanation.isna().all()
    assert data[2].table.maxcos.isna().all() and data[0].table.maxcos.notna().all()  # seed 2 is never first in a pair
    subst = pd.DataFrame({"latent": [2, 0], "score_partner": [0.25, 1.0]})
    data = seed_tables([0, 1, 2], pairs, latents, {0: scores}, {1: subst})
    assert data[1].table.subst[2] == 0.25 and data[1].table.subst[0] == 1.0 and data[1].table.subst.isna().sum() == len(data[1].table) - 2
    assert data[0].table.subst.isna().all()
    with pytest.raises(BrowserError, match="substitution table of seed 1"):
        seed_tables([0, 1, 2], pairs, latents, None, {1: pd.DataFrame({"latent": [10**6], "score_partner": [0.5]})})
    with pytest.raises(BrowserError, match="matches of seeds 0 and 2 missing"):
        seed_tables([0, 1, 2], {k: v for k, v in pairs.items() if k != (0, 2)}, latents)
    with pytest.raises(BrowserError, match="seed 1 has"):
        seed_tables([0, 1, 2], pairs, latents[latents.base != 1])


def test_scan_matches_brute_force():
    rng = np.random.default_rng(1)
    n, d, context = 10, 8, 12
    rows = rng.normal(size=(context * 6, d)).astype(np.float32)
    sae = SparseCoder(d, SaeConfig(arch="topk", num_latents=n, k=3), seed=4).eval()
    cfg = ContextConfig(examples=2, window=4, tokens=len(rows), bins=5, batch_rows=7)
    scan = scan_latents(sae, rows, context, cfg)
    with torch.no_grad():
        acts = latent_activations(sae, torch.from_numpy(rows), torch.arange(n)).numpy()
    for j in range(n):
        col = acts[:, j]
        assert scan.n_active[j] == (col > 0).sum() and scan.max_act[j] == pytest.approx(col.max())
        assert scan.counts[j].sum() == (col > 0).sum()
        if col.max() > 0:
            np.testing.assert_array_equal(scan.counts[j], np.histogram(col[col > 0], bins=5, range=(0, col.max()))[0])
        mine = np.flatnonzero(scan.ctx_latent == j)
        window_max = col.reshape(-1, 4).max(1)
        expected = np.sort(window_max[window_max > 0])[::-1][:2]
        np.testing.assert_allclose(scan.ctx_peak[mine], expected, rtol=1e-6)
        for i in mine:
            start = scan.ctx_start[i]
            assert start // context == (start + 3) // context  # a context never crosses into the next one
            np.testing.assert_allclose(scan.ctx_acts[i], col[start : start + 4], rtol=1e-6)
            # one of the window's activations (to float32 rounding: the scan multiplies 7-row batches, and MKL's
            # result for a row can differ in the last bit with the batch size on Intel CPUs)
            assert np.isclose(col[start : start + 4], scan.ctx_peak[i], rtol=1e-6, atol=0).any()


def test_build_writes_blocks_and_escapes_nothing_it_should_not(small_browser):
    folder, args = small_browser
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == ["browser.css", "browser.js", "data/seed0/block-0000.js", "data/seed0/table.js", "data/seed1/block-0000.js",
                     "data/seed1/table.js", "data/seed2/block-0000.js", "data/seed2/table.js", "data/summary.js", "index.html"]
    index = (folder / "index.html").read_text()
    assert "<title>Latents of m/d/h/topk-test</title>" in index
    assert sorted(re.findall(r'(?:src|href)="([^"]*)"', index)) == ["#", "browser.css", "browser.js", "data/summary.js"]
    block = (folder / "data/seed0/block-0000.js").read_text()
    prefix = 'SAESEEDS.register("block/0/0",'
    assert block.isascii() and block.startswith(prefix) and block.endswith(");\n")
    latents = json.loads(block[len(prefix) : -3])["latents"]
    assert len(latents) == 24 and [p[0] for p in latents[0]["partners"]] == [1, 2]
    shown = {t for latent in latents for ex in latent["examples"] for t in ex["tokens"]}
    assert {HOSTILE_TOKEN, HOSTILE_IMG} <= shown  # the strings themselves, unchanged: the page inserts them as text
    assert all(len(ex["tokens"]) == len(ex["acts"]) == 6 for latent in latents for ex in latent["examples"])


# ---- in Chromium ----

def browser_or_skip():
    """Returns playwright's sync_playwright, or skips saying what is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    return sync_playwright


class Page:
    """A Chromium page that records every request and every dialog (an alert would be one)."""

    def __init__(self, pw, viewport=(1200, 900)):
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.requests, self.dialogs, self.errors = [], [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def close(self):
        self.browser.close()


def open_page(pw, url):
    p = Page(pw)
    p.page.goto(url)
    p.page.wait_for_selector("#latents-body tr")
    return p


def wait_title(page, text):
    # a selector, not wait_for_function: the page's CSP forbids the eval that a polled JS predicate needs
    page.wait_for_selector(f'#latent-title:text-is("{text}")')


def column(page, index):
    return page.eval_on_selector_all("#latents-body tr", f"rows => rows.map(r => r.children[{index}].textContent)")


def check_the_page(p, folder: Path, base_url: str):
    page = p.page
    n = len(page.query_selector_all("#latents-body tr"))
    assert n == 24 and page.text_content("#page-info").startswith("1–24 of 24")
    # sort by decoder cosine: descending first, then ascending on a second click
    page.click("th[data-key=dec_cos]")
    values = [float(v) for v in column(page, 3)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    page.click("th[data-key=dec_cos]")
    values = [float(v) for v in column(page, 3)]
    assert values == sorted(values)
    assert page.get_attribute("th[data-key=dec_cos]", "aria-sort") == "ascending"
    # orphans only: every row shares with no other seed
    page.check("#orphans")
    shared = column(page, 1)
    assert 0 < len(shared) < 24 and set(shared) == {"0"}
    page.uncheck("#orphans")
    page.fill("#min-shared", "2")
    assert set(column(page, 1)) == {"2"}
    page.fill("#min-shared", "0")
    # text search in explanations; a hostile explanation is plain text in the table
    page.fill("#search", "bold")
    assert column(page, 0) == ["0"]
    assert column(page, 8) == [HOSTILE_EXPLANATION]
    page.fill("#search", "")
    # a latent whose partner is shared, then its partner's page in the other seed, and back
    table = pd.read_parquet(folder.parent / "orphans" / "latents.parquet")
    latent = int(table[(table.base == 0) & (table.n_shared == 2)].latent.min())
    page.click(f"#latents-body tr[data-latent='{latent}'] a")
    page.wait_for_selector("#latent-view:not([hidden])")
    assert page.text_content("#latent-title") == f"Seed 0 · latent {latent}"
    rows = page.query_selector_all("#partners-body tr")
    assert [r.get_attribute("data-seed") for r in rows] == ["1", "2"]
    assert all(r.get_attribute("class") == "shared" for r in rows)
    partner = page.text_content("#partners-body tr[data-seed='1'] td:nth-child(4) a")
    page.click("#partners-body tr[data-seed='1'] td:nth-child(4) a")
    wait_title(page, f"Seed 1 · latent {partner}")
    back = page.text_content("#partners-body tr[data-seed='0'] td:nth-child(4) a")
    assert back == str(latent)  # the partner's decoder partner in seed 0 is where we came from
    page.go_back()
    wait_title(page, f"Seed 0 · latent {latent}")
    # shaded tokens: active ones carry a background whose strength follows the activation
    tokens = page.eval_on_selector_all(".example .tok", "ts => ts.map(t => [Number(t.dataset.act), t.style.backgroundColor])")
    assert tokens and any(a > 0 for a, _ in tokens)
    assert all((a > 0) == bool(bg) for a, bg in tokens)
    strongest = max(tokens, key=lambda t: t[0])
    assert strongest[1] == "rgb(230, 97, 1)"  # full strength at the page's peak; Chromium keeps alpha to 1/255
    weaker = [(a, float(bg.split(",")[-1].rstrip(")"))) for a, bg in tokens if bg.startswith("rgba")]
    assert weaker and all(alpha == pytest.approx(0.15 + 0.85 * a / strongest[0], abs=5e-3) for a, alpha in weaker)
    assert page.query_selector("#histogram svg rect") is not None and page.query_selector("#latent-chart .latent-dot") is not None
    # the hostile token and explanation on latent 0's page: shown as text, nothing ran
    page.goto(base_url + "#seed0/latent0")
    wait_title(page, "Seed 0 · latent 0")
    assert page.text_content("#explanation") == HOSTILE_EXPLANATION
    shown = []
    for latent in range(24):  # find the hostile tokens wherever they are shown
        page.goto(base_url + f"#seed0/latent{latent}")
        wait_title(page, f"Seed 0 · latent {latent}")
        shown += [t for t in page.eval_on_selector_all(".example .tok", "ts => ts.map(t => t.textContent)") if "<" in t]
    assert HOSTILE_TOKEN in shown and HOSTILE_IMG in shown
    assert page.evaluate("window.__pwned === undefined") and not p.dialogs
    assert page.evaluate("document.querySelectorAll('#examples script, #examples img, #explanation img, #latents img').length") == 0
    assert not p.errors


def assert_requests_stay_inside(requests, prefix):
    assert requests and all(url.startswith(prefix) for url in requests), [u for u in requests if not u.startswith(prefix)]


def test_page_from_file_url(small_browser):
    folder, _ = small_browser
    sync_playwright = browser_or_skip()
    with sync_playwright() as pw:
        url = (folder / "index.html").as_uri()
        p = open_page(pw, url)
        try:
            check_the_page(p, folder, url)
            assert_requests_stay_inside(p.requests, folder.as_uri() + "/")
        finally:
            p.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_page_from_a_web_server(small_browser):
    folder, _ = small_browser
    sync_playwright = browser_or_skip()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            p = open_page(pw, base + "index.html")
            try:
                page = p.page
                page.click("#latents-body tr[data-latent='0'] a")
                page.wait_for_selector(".example .tok")
                assert page.text_content("#explanation") == HOSTILE_EXPLANATION
                assert page.evaluate("window.__pwned === undefined") and not p.dialogs and not p.errors
                assert_requests_stay_inside(p.requests, base)
            finally:
                p.close()
    finally:
        server.shutdown()


# ---- scale: 32,768 latents ----

def write_large_set(root: Path, *, n=32768, seeds=(0, 1), d=32, context=64, contexts=128) -> dict:
    """Writes a random SAE set in the workflow's formats at the paper's dictionary size: random checkpoints,
    matchings that are random bijections with about 40% of the latents shared, real orphan tables, a small
    store with tokens, explanations for 1,000 latents of the first seed."""
    rng = np.random.default_rng(7)
    checkpoints = {}
    for s in seeds:
        checkpoints[s] = root / f"seed{s}"
        SparseCoder(d, SaeConfig(arch="topk", num_latents=n, k=32), seed=s).save_to_disk(checkpoints[s])
    matches = {}
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            perm = rng.permutation(n)
            dec = np.where(rng.random(n) < 0.8, perm, rng.permutation(n))
            dec_partner = perm.copy()  # keep the decoder matching a bijection: swap a random 20% among themselves
            moved = np.flatnonzero(rng.random(n) < 0.2)
            dec_partner[moved] = perm[rng.permutation(moved)]
            enc_cos = np.where(rng.random(n) < 0.45, rng.uniform(0.7, 1, n), rng.uniform(0, 0.7, n)).astype(np.float32)
            dec_cos = np.clip(enc_cos + rng.normal(0, 0.05, n), 0, 1).astype(np.float32)
            shared = (perm == dec_partner) & (enc_cos >= 0.7) & (dec_cos >= 0.7)
            df = pd.DataFrame({"latent": np.arange(n), "enc_partner": perm, "enc_cos": enc_cos, "dec_partner": dec_partner, "dec_cos": dec_cos,
                               "enc_maxcos": np.maximum(enc_cos, rng.uniform(0, 1, n)).astype(np.float32),
                               "dec_maxcos": np.maximum(dec_cos, rng.uniform(0, 1, n)).astype(np.float32), "shared": shared})
            del dec
            matches[(a, b)] = root / "matches" / f"seed{a}-seed{b}.parquet"
            # random partners, not a matching: marked certified only so the browser, which reads certified files
            # alone (saeseeds.matching.matches_file), accepts this scale test's input
            write_matches(df, {"threshold": 0.7, "definition": "paper", "n": n, "certified": True}, matches[(a, b)])
    masks = pair_masks_from_files(matches)
    write_parquet(latent_table(masks, {s: rng.beta(0.5, 50, n) for s in seeds}), root / "orphans" / "latents.parquet")
    write_parquet(subset_table(masks), root / "orphans" / "subsets.parquet")
    rows = rng.normal(size=(context * contexts, d)).astype(np.float32)
    writer = StoreWriter(root / "activations.zarr", len(rows), d, dtype="float32")
    writer.append(rows)
    writer.add_token_ids(rng.integers(0, 5000, size=(contexts, context)))
    store = writer.finish({"model": "m", "revision": "main", "dataset": "d", "hook": "h", "n_train": len(rows), "n_heldout": 0})
    words = ["river", "king", "number", "code", "light", "bread", "error", "list", "name", "house"]
    explained = np.sort(rng.choice(n, 1000, replace=False))
    scores = pd.DataFrame({"seed": seeds[0], "latent": explained, "score": rng.uniform(0.4, 1, len(explained)),
                           "explanation": [" ".join(rng.choice(words, 6)) for _ in explained]})
    write_parquet(scores, root / "autointerp" / f"seed{seeds[0]}.parquet")
    return dict(label="synthetic/32k/x/topk-32768", matches=matches, latents=root / "orphans" / "latents.parquet",
                subsets=root / "orphans" / "subsets.parquet", checkpoints=checkpoints, store=store,
                decode=lambda ids: {int(i): f" tok{int(i)}" for i in ids},
                autointerp_scores={seeds[0]: root / "autointerp" / f"seed{seeds[0]}.parquet"},
                cfg=ContextConfig(examples=5, window=16, tokens=len(rows), batch_rows=256))


def raw_bytes(folder: Path) -> int:
    """Returns the size of what a browser folder shows, stored packed: per latent 6 float32/int32 table columns and
    its explanation (UTF-8), per partner 2 int32 + 3 float32 + 1 byte, per context token its UTF-8 string and a
    float32, per histogram 20 int32 + max + count."""
    total = 0
    for table in folder.glob("data/seed*/table.js"):
        t = json.loads(table.read_text().split(",", 1)[1][:-3])
        total += 24 * t["n"] + sum(len(e.encode()) for e in t["explanation"] if e)
    for block in folder.glob("data/seed*/block-*.js"):
        for latent in json.loads(block.read_text().split(",", 1)[1][:-3])["latents"]:
            total += 21 * len(latent["partners"]) + (88 if latent["hist"] else 0)
            total += sum(len(t.encode()) + 4 for ex in latent["examples"] for t in ex["tokens"])
    return total


def test_32k_latents_load_and_sort_in_chromium(tmp_path):
    """Benchmark (printed, not asserted against a time): build a 32,768-latent, 2-seed set, open it from
    file://, sort it, open a latent of the last block; only the files needed are read."""
    sync_playwright = browser_or_skip()
    args = write_large_set(tmp_path)
    start = time.perf_counter()
    folder = build_browser(tmp_path / "browser", **args)
    build_s = time.perf_counter() - start
    data_bytes = sum(p.stat().st_size for p in tmp_path.rglob("*.parquet"))
    size = folder_bytes(folder)
    shown_bytes = raw_bytes(folder)
    table = pd.read_parquet(args["latents"])
    with sync_playwright() as pw:
        p = Page(pw)
        try:
            page = p.page
            page.goto((folder / "index.html").as_uri())
            page.wait_for_selector("#latents-body tr")
            first_paint = page.evaluate("SAESEEDS_TIMINGS.firstPaint")
            assert page.text_content("#page-info").startswith("1–100 of 32768")
            sort_ms = page.evaluate("""async () => {
                const t0 = performance.now();
                document.querySelector("th[data-key=firing]").click();
                await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
                return performance.now() - t0; }""")
            shown = [int(v) for v in column(page, 0)]
            base = table[table.base == 0].assign(shown=[float(f"{v:.4g}") for v in table[table.base == 0].firing_frequency])  # as the page rounds
            expected = base.sort_values(["shown", "latent"], ascending=[False, True]).latent.head(100).tolist()
            assert shown == expected
            page.fill("#search", "river king")
            found = page.text_content("#page-info")
            page.goto((folder / "index.html").as_uri() + "#seed1/latent32767")
            wait_title(page, "Seed 1 · latent 32767")
            assert len(page.query_selector_all("#partners-body tr")) == 1
            names = sorted(u.split("/browser/")[1] for u in p.requests)
            assert names == ["browser.css", "browser.js", "data/seed0/table.js", "data/seed1/block-0127.js", "data/seed1/table.js",
                             "data/summary.js", "index.html"], names
            assert not p.errors and not p.dialogs
        finally:
            p.close()
    print(f"\n32K browser: 2 seeds x 32,768 latents, built in {build_s:.1f} s, folder {size / 1e6:.1f} MB "
          f"({size / 2 / 32768:.0f} B per latent; {size / shown_bytes:.1f}x the {shown_bytes / 1e6:.1f} MB of binary data it shows; "
          f"input parquet files {data_bytes / 1e6:.1f} MB); first paint {first_paint:.0f} ms "
          f"after navigation start, sort by firing {sort_ms:.0f} ms, search: {found}")


def summary_of(folder):
    text = (folder / "data" / "summary.js").read_text()
    return json.loads(text[len('SAESEEDS.register("summary",') : -3])


def test_without_tokens_or_store_the_browser_says_what_it_lacks(tmp_path):
    from saeseeds.activations.store import write_store

    args = write_set(tmp_path, hostile=False)
    rows = np.asarray(args["store"].array[:], dtype=np.float32)
    no_tokens = write_store(tmp_path / "synthetic.zarr", rows, n_heldout=64, attrs={})  # like a synthetic site's
    folder = build_browser(tmp_path / "b1", **{**args, "store": no_tokens, "decode": None})
    summary = summary_of(folder)
    assert summary["scanned"] and "histograms only" in summary["contexts_note"]
    block = json.loads((folder / "data/seed0/block-0000.js").read_text()[len('SAESEEDS.register("block/0/0",') : -3])
    assert all(not latent["examples"] for latent in block["latents"]) and any(latent["hist"] for latent in block["latents"])
    folder = build_browser(tmp_path / "b2", **{**args, "store": None})
    summary = summary_of(folder)
    assert not summary["scanned"] and "on the fly" in summary["contexts_note"]
    with pytest.raises(BrowserError, match=r"browser.tokens=8 is less than one context \(16 tokens\)"):
        build_browser(tmp_path / "b3", **{**args, "cfg": ContextConfig(tokens=8)})
    assert not (tmp_path / "b3").exists() and not list(tmp_path.glob(".b3.tmp-*"))


def test_config_key_browser_fills_defaults_and_names_bad_values():
    import yaml

    from saeseeds.config import study
    root = Path(__file__).resolve().parents[2]
    schema = root / "workflow" / "schemas" / "config.schema.yaml"
    config = yaml.safe_load((root / "config" / "smoke.yaml").read_text())
    config["browser"] = {}
    study.validate_schema(config, schema)
    assert config["browser"] == {"examples": 5, "window": 16, "tokens": 16384, "device": "cpu"}
    defaults = ContextConfig()
    assert (defaults.examples, defaults.window, defaults.tokens) == (5, 16, 16384)  # the schema documents the code's defaults
    for key, value in (("tokens", 0), ("window", "wide"), ("device", "gpu"), ("colour", "red")):
        config["browser"] = {key: value}
        with pytest.raises(study.ConfigError, match=f"'browser.{key}'"):
            study.validate_schema(config, schema)


def test_pair_views_of_seeds_of_different_sizes_leave_the_extra_latents_without_partner():
    """An external set compares 4 with 3 latents: b's view reads the matching backwards, a's extra latent has none."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 8)).astype(np.float32)
    b = a[[2, 0, 3]]
    df, meta = match_dictionaries(a, a, b, b, threshold=0.7, definition="paper")
    view_a, view_b = pair_views(df, meta, where="test")
    assert view_a["enc_partner"].tolist() == [1, -1, 0, 2] and view_a["shared"].tolist() == [True, False, True, True]
    assert view_b["enc_partner"].tolist() == [2, 0, 3] and view_b["shared"].all()
    assert np.isnan(view_a["enc_cos"][1]) and np.allclose(view_b["dec_cos"], 1.0)

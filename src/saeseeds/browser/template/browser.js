// The latent browser of one SAE set (saeseeds.browser.build writes the data beside this file).
// Safety: every string from the data (token strings, explanations, labels) reaches the page through
// textContent or setAttribute on a non-script attribute, never through innerHTML; the page loads only
// files of its own folder (data/*.js through <script src>, which works from file:// where fetch does not).
"use strict";

(function () {
  const loaded = Object.create(null);
  const waiting = Object.create(null);

  const SAESEEDS = (window.SAESEEDS = {
    register(name, data) {
      loaded[name] = data;
      if (waiting[name]) waiting[name].resolve(data);
    },
  });

  function load(name, src) {
    if (name in loaded) return Promise.resolve(loaded[name]);
    if (!waiting[name]) {
      const entry = {};
      entry.promise = new Promise((resolve, reject) => { entry.resolve = resolve; entry.reject = reject; });
      waiting[name] = entry;
      const el = document.createElement("script");
      el.src = src;
      el.onerror = () => entry.reject(new Error("cannot load " + src));
      document.head.appendChild(el);
    }
    return waiting[name].promise;
  }

  // ---- small DOM helpers (text only) ----
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function link(href, text) {
    const a = el("a", text);
    a.setAttribute("href", href);
    return a;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const k in attrs) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    return Number(x).toFixed(digits === undefined ? 3 : digits);
  }
  function fmtFreq(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (x === 0) return "0";
    return x >= 0.001 ? (100 * x).toFixed(2) + "%" : x.toExponential(1);
  }
  const latentHref = (seed, latent) => "#seed" + seed + "/latent" + latent;

  // ---- state ----
  const COLUMNS = [
    { key: "latent", label: "latent", title: "latent id in this seed", num: true },
    { key: "n_shared", label: "seeds sharing", title: "how many of the other seeds share this latent (same encoder and decoder partner, both cosines above the threshold)", num: true },
    { key: "enc_cos", label: "enc cos", title: "matched encoder cosine, mean over the other seeds", num: true },
    { key: "dec_cos", label: "dec cos", title: "matched decoder cosine, mean over the other seeds", num: true },
    { key: "maxcos", label: "max-cos", title: "best decoder cosine with any latent of another seed (known where this seed comes first in a pair)", num: true },
    { key: "firing", label: "firing", title: "firing frequency on held-out activations", num: true },
    { key: "score", label: "detection", title: "autointerp detection score (balanced accuracy), where autointerp ran", num: true },
    { key: "subst", label: "substitution", title: "substitution score: the partner in the other seed of the set's first pair swapped into the reconstruction (1 = does this latent's job, 0 = no better than deleting it), where the functional stage ran", num: true },
    { key: "explanation", label: "explanation", title: "autointerp explanation, where autointerp ran", num: false },
  ];
  const PAGE = 100;
  const state = { seed: null, sortKey: "latent", sortDir: 1, orphans: false, minShared: 0, query: "", page: 0, view: null };
  const tables = Object.create(null); // seed -> {n, columns as Float64Array, explanation, lower}
  let summary = null;
  const timings = (window.SAESEEDS_TIMINGS = {});

  function tableOf(seed) {
    if (tables[seed]) return Promise.resolve(tables[seed]);
    return load("table/" + seed, "data/seed" + seed + "/table.js").then((raw) => {
      const t = { n: raw.n, explanation: raw.explanation, lower: raw.explanation.map((e) => (e === null ? null : e.toLowerCase())) };
      t.latent = new Float64Array(raw.n).map((_, i) => i);
      for (const key of ["n_shared", "enc_cos", "dec_cos", "maxcos", "firing", "score", "subst"]) {
        const col = new Float64Array(raw.n);
        for (let i = 0; i < raw.n; i++) col[i] = raw[key][i] === null ? NaN : raw[key][i];
        t[key] = col;
      }
      tables[seed] = t;
      return t;
    });
  }

  function blockOf(seed, latent) {
    const k = Math.floor(latent / summary.block);
    const name = "block/" + seed + "/" + k;
    return load(name, "data/seed" + seed + "/block-" + String(k).padStart(4, "0") + ".js").then((b) => b.latents[latent - b.first]);
  }

  // ---- the table ----
  function visibleRows(t) {
    const rows = [];
    const q = state.query.trim().toLowerCase();
    for (let i = 0; i < t.n; i++) {
      const shared = t.n_shared[i];
      if (state.orphans && shared !== 0) continue;
      if (shared < state.minShared) continue;
      if (q && (t.lower[i] === null || t.lower[i].indexOf(q) < 0)) continue;
      rows.push(i);
    }
    const dir = state.sortDir;
    if (state.sortKey === "explanation") {
      const e = t.explanation;
      rows.sort((a, b) => {
        const x = e[a], y = e[b];
        if (x === null || y === null) return x === y ? a - b : x === null ? 1 : -1; // missing last
        return x < y ? -dir : x > y ? dir : a - b;
      });
    } else {
      const c = t[state.sortKey];
      rows.sort((a, b) => {
        const x = c[a], y = c[b];
        const nx = Number.isNaN(x), ny = Number.isNaN(y);
        if (nx || ny) return nx && ny ? a - b : nx ? 1 : -1; // missing last, whichever the direction
        return x < y ? -dir : x > y ? dir : a - b;
      });
    }
    return rows;
  }

  function renderHead() {
    const head = $("latents-head");
    head.replaceChildren();
    for (const col of COLUMNS) {
      const th = el("th", col.label);
      th.dataset.key = col.key;
      th.setAttribute("title", col.title + " (click to sort)");
      th.setAttribute("aria-sort", state.sortKey === col.key ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
      if (col.num) th.className = "num";
      th.addEventListener("click", () => {
        if (state.sortKey === col.key) state.sortDir = -state.sortDir;
        else { state.sortKey = col.key; state.sortDir = col.key === "latent" || col.key === "explanation" ? 1 : -1; }
        state.page = 0;
        renderTable();
      });
      head.appendChild(th);
    }
  }

  function renderTable() {
    const start = performance.now();
    const seed = state.seed;
    return tableOf(seed).then((t) => {
      if (seed !== state.seed) return;
      const rows = visibleRows(t);
      const pages = Math.max(1, Math.ceil(rows.length / PAGE));
      state.page = Math.min(state.page, pages - 1);
      const body = $("latents-body");
      const frag = document.createDocumentFragment();
      for (const i of rows.slice(state.page * PAGE, (state.page + 1) * PAGE)) {
        const tr = document.createElement("tr");
        const id = el("td", null, "num");
        id.appendChild(link(latentHref(seed, i), i));
        tr.appendChild(id);
        tr.appendChild(el("td", t.n_shared[i], "num"));
        tr.appendChild(el("td", fmt(t.enc_cos[i]), "num"));
        tr.appendChild(el("td", fmt(t.dec_cos[i]), "num"));
        tr.appendChild(el("td", fmt(t.maxcos[i]), "num"));
        tr.appendChild(el("td", fmtFreq(t.firing[i]), "num"));
        tr.appendChild(el("td", fmt(t.score[i], 2), "num"));
        tr.appendChild(el("td", fmt(t.subst[i], 2), "num"));
        tr.appendChild(el("td", t.explanation[i] === null ? "" : t.explanation[i], "explanation-cell"));
        tr.dataset.latent = String(i);
        frag.appendChild(tr);
      }
      body.replaceChildren(frag);
      const first = rows.length ? state.page * PAGE + 1 : 0;
      $("page-info").textContent = first + "–" + Math.min(rows.length, (state.page + 1) * PAGE) + " of " + rows.length +
        (rows.length < t.n ? " (filtered from " + t.n + ")" : "") + " · page " + (state.page + 1) + " of " + pages;
      $("prev").disabled = state.page === 0;
      $("next").disabled = state.page >= pages - 1;
      renderHead();
      timings.lastRender = performance.now() - start;
      document.body.dataset.rendered = String(Date.now());
    });
  }

  // ---- charts (inline SVG, no library) ----
  function choose(n, k) {
    if (k < 0 || k > n) return 0;
    let r = 1;
    for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
    return r;
  }

  function drawCurve(target, seed, nShared) {
    const curve = (summary.curves[String(seed)] || []).slice();
    const N = summary.seeds.length;
    const W = 330, H = 190, L = 42, R = 10, T = 12, B = 36;
    const root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img" });
    const xs = curve.map((p) => p[0]);
    const lo = Math.min(2, ...xs), hi = Math.max(N, lo);
    const x = (m) => (hi === lo ? (L + W - R) / 2 : L + ((m - lo) / (hi - lo)) * (W - L - R)); // 2 seeds: one point, centred
    const y = (f) => T + (1 - f) * (H - T - B);
    root.appendChild(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
    root.appendChild(svg("line", { x1: L, y1: y(0), x2: L, y2: y(1), class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      root.appendChild(svg("text", { x: L - 6, y: y(f) + 4, class: "tick", "text-anchor": "end" }, f));
      root.appendChild(svg("line", { x1: L, y1: y(f), x2: W - R, y2: y(f), class: "grid" }));
    }
    for (let m = lo; m <= hi; m++) root.appendChild(svg("text", { x: x(m), y: H - B + 14, class: "tick", "text-anchor": "middle" }, m));
    root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, class: "label", "text-anchor": "middle" }, "seeds in the subset"));
    const path = (pts) => pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    if (curve.length) {
      root.appendChild(svg("path", { d: path(curve), class: "set-line" }));
      for (const p of curve) root.appendChild(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, class: "set-dot" }));
    }
    const cap = el("figcaption");
    cap.appendChild(el("span", "only in seed " + seed + " vs number of seeds", "set-key"));
    if (nShared !== undefined) {
      // This latent is only-in-base in a random subset of m seeds containing its seed iff none of the
      // subset's m-1 others is among the nShared seeds sharing it: C(N-1-j, m-1) / C(N-1, m-1).
      // Averaged over the seed's latents this is the set's curve.
      const own = [];
      for (let m = 2; m <= N; m++) own.push([m, choose(N - 1 - nShared, m - 1) / choose(N - 1, m - 1)]);
      const g = svg("g", { class: "this-latent" });
      g.appendChild(svg("path", { d: path(own), class: "latent-line" }));
      for (const p of own) g.appendChild(svg("circle", { cx: x(p[0]), cy: y(p[1]), r: 4, class: "latent-dot" }));
      root.appendChild(g);
      cap.appendChild(el("span", " · this latent (shared with " + nShared + " of " + (N - 1) + " other seeds): chance it is only in its seed", "latent-key"));
    }
    target.replaceChildren(root, cap);
  }

  function drawHistogram(target, hist) {
    target.replaceChildren();
    if (!hist) {
      target.appendChild(el("figcaption", "no activation histogram: " + (summary.scanned ? "this latent never fired in the searched tokens" : "no activations were searched for this set")));
      return;
    }
    const W = 330, H = 150, L = 42, R = 10, T = 10, B = 34;
    const root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img" });
    const top = Math.max(1, ...hist.counts);
    const bw = (W - L - R) / hist.counts.length;
    hist.counts.forEach((c, i) => {
      const h = (c / top) * (H - T - B);
      const bar = svg("rect", { x: L + i * bw + 0.5, y: H - B - h, width: Math.max(bw - 1, 1), height: h, class: "bar" });
      bar.appendChild(svg("title", {}, c + " tokens"));
      root.appendChild(bar);
    });
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    root.appendChild(svg("text", { x: L - 6, y: T + 8, class: "tick", "text-anchor": "end" }, top));
    root.appendChild(svg("text", { x: L, y: H - B + 14, class: "tick", "text-anchor": "start" }, 0));
    root.appendChild(svg("text", { x: W - R, y: H - B + 14, class: "tick", "text-anchor": "end" }, fmt(hist.max, 2)));
    root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, class: "label", "text-anchor": "middle" }, "activation (non-zero)"));
    target.appendChild(root);
    target.appendChild(el("figcaption", hist.active + " active tokens of " + summary.scan_tokens + " searched"));
  }

  // ---- one latent ----
  function renderExamples(examples) {
    const box = $("examples");
    box.replaceChildren();
    if (!examples.length) {
      $("examples-title").textContent = "Top-activating contexts";
      box.appendChild(el("p", summary.contexts_note || "No activating context in the searched tokens.", "note"));
      return;
    }
    $("examples-title").textContent = examples[0].source === "autointerp"
      ? "Top-activating windows the explainer saw (autointerp)" : "Top-activating contexts (first " + summary.scan_tokens + " tokens)";
    const peak = Math.max(1e-9, ...examples.map((e) => Math.max(...e.acts)));
    for (const ex of examples) {
      const line = el("div", null, "example");
      ex.tokens.forEach((tok, i) => {
        const a = ex.acts[i] || 0;
        const span = el("span", tok.replace(/\n/g, "\u21b5"), a > 0 ? "tok active" : "tok");
        if (a > 0) span.style.backgroundColor = "rgba(230, 97, 1, " + (0.15 + 0.85 * (a / peak)).toFixed(3) + ")";
        span.dataset.act = String(a);
        span.setAttribute("title", "activation " + fmt(a, 3));
        line.appendChild(span);
      });
      box.appendChild(line);
    }
  }

  function renderLatent(seed, latent) {
    return Promise.all([tableOf(seed), blockOf(seed, latent)]).then(([t, info]) => {
      if (state.view !== "latent" || state.seed !== seed) return;
      const N = summary.seeds.length;
      $("latent-title").textContent = "Seed " + seed + " · latent " + latent;
      $("back").setAttribute("href", "#seed" + seed);
      const shared = t.n_shared[latent];
      $("latent-facts").textContent = (shared === 0 ? "Orphan: shared with none" : "Shared with " + shared) + " of the " + (N - 1) +
        " other seeds · firing frequency " + fmtFreq(t.firing[latent]) +
        (Number.isNaN(t.score[latent]) ? "" : " · detection score " + fmt(t.score[latent], 2)) +
        (Number.isNaN(t.subst[latent]) ? "" : " · substitution score " + fmt(t.subst[latent], 2));
      const expl = t.explanation[latent];
      $("explanation").textContent = expl === null ? "No explanation (autointerp did not explain this latent)." : expl;
      $("explanation").className = expl === null ? "explanation none" : "explanation";
      const body = $("partners-body");
      body.replaceChildren();
      for (const [other, encP, encC, decP, decC, maxc, isShared] of info.partners) {
        const tr = document.createElement("tr");
        tr.className = isShared ? "shared" : "";
        tr.appendChild(el("td", other, "num"));
        // -1: no partner (an external set whose seeds differ in size leaves the larger side's extra latents unmatched)
        const partnerCell = (p) => { const c = el("td", p < 0 ? "none" : null, "num"); if (p >= 0) c.appendChild(link(latentHref(other, p), p)); return c; };
        tr.appendChild(partnerCell(encP));
        tr.appendChild(el("td", fmt(encC), "num"));
        tr.appendChild(partnerCell(decP));
        tr.appendChild(el("td", fmt(decC), "num"));
        tr.appendChild(el("td", fmt(maxc), "num"));
        tr.appendChild(el("td", isShared ? "shared" : "—"));
        tr.dataset.seed = String(other);
        body.appendChild(tr);
      }
      renderExamples(info.examples);
      drawHistogram($("histogram"), info.hist);
      drawCurve($("latent-chart"), seed, shared);
      document.body.dataset.rendered = String(Date.now());
    });
  }

  // ---- routing ----
  function route() {
    const m = /^#seed(\d+)(?:\/latent(\d+))?$/.exec(location.hash);
    const seeds = summary.seeds.map((s) => s.seed);
    let seed = m ? Number(m[1]) : seeds[0];
    if (seeds.indexOf(seed) < 0) seed = seeds[0];
    const latent = m && m[2] !== undefined ? Number(m[2]) : null;
    const n = summary.seeds[seeds.indexOf(seed)].n;
    if (seed !== state.seed) { state.seed = seed; state.page = 0; }
    $("seed").value = String(seed);
    if (latent !== null && latent < n) {
      state.view = "latent";
      $("table-view").hidden = true;
      $("latent-view").hidden = false;
      window.scrollTo(0, 0);
      return renderLatent(seed, latent);
    }
    state.view = "table";
    $("latent-view").hidden = true;
    $("table-view").hidden = false;
    drawCurve($("table-chart"), seed);
    return renderTable();
  }

  function start() {
    summary = loaded.summary;
    $("fallback").remove();
    const N = summary.seeds.length;
    const total = summary.seeds.reduce((a, s) => a + s.n, 0);
    $("set-facts").textContent = N + " seeds, " + total + " latents in all · shared = " +
      (summary.definition === "paper" ? "same encoder and decoder partner, both cosines ≥ " : "both cosines > ") + summary.threshold +
      " · " + summary.notes.join(" · ");
    const select = $("seed");
    for (const s of summary.seeds) {
      const o = el("option", "seed " + s.seed + " (" + s.n + " latents)");
      o.value = String(s.seed);
      select.appendChild(o);
    }
    select.addEventListener("change", () => { location.hash = "#seed" + select.value; });
    $("orphans").addEventListener("change", (e) => { state.orphans = e.target.checked; state.page = 0; renderTable(); });
    $("min-shared").setAttribute("max", String(N - 1));
    $("min-shared").addEventListener("input", (e) => { state.minShared = Number(e.target.value) || 0; state.page = 0; renderTable(); });
    $("search").addEventListener("input", (e) => { state.query = e.target.value; state.page = 0; renderTable(); });
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("prev").addEventListener("click", () => { state.page -= 1; renderTable(); });
    $("next").addEventListener("click", () => { state.page += 1; renderTable(); });
    window.addEventListener("hashchange", route);
    const t0 = performance.now();
    route().then(() => { timings.firstPaint = performance.now(); timings.routeMs = performance.now() - t0; });
  }

  SAESEEDS.load = load;
  document.addEventListener("DOMContentLoaded", () => {
    if (!loaded.summary) { $("fallback").textContent = "data/summary.js is missing beside this page."; return; }
    start();
  });
})();

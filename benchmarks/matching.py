"""Matching speed and memory: saeseeds' certified sparse path vs the paper's dense scipy recipe.

Synthetic SAE pairs as in issue 5: d = 768 (by default), 40% of b's latents are noisy copies of
a's (noise per latent so that matched cosines spread over ~0.65-0.95, around the 0.7 threshold),
the rest unrelated; encoder and decoder alike. Both methods match encoder and decoder rows.

- scipy dense (the authors' recipe, SrGonao/sae_overlap): cosines in chunks of 4096 rows (torch
  matmul) into one dense n x n matrix, then `scipy.optimize.linear_sum_assignment`. We write the
  chunks straight into a negated float64 matrix, which is leaner and faster than their float32
  matrix + maximize=True (scipy copies that twice: 20 bytes per pair, 21 GB at 32K).
- saeseeds: `match_dictionaries(method="sparse")`: a blockwise screening pass (bf16 where the CPU
  multiplies it natively, else int8 with exact int32 sums, else fp32; `--screen` picks one) with a proven
  error bound, exact cosines where needed, sparse exact solve, certificate over all n^2 pairs.

Every (method, n) runs in its own subprocess so its peak RSS is its own. Both methods must reach
the same optimum, compared on the exact cosines saeseeds matches (float64 products rounded to
float32; the dense recipes' matchings are re-scored on them). The "floor" is one float32 matmul
pass over each matrix in 1024-row blocks, measured in saeseeds' subprocess right before each of
its `--repeat` runs (the best of each is kept, and the table adds each run's wall over the floor just
before it): what an exact method looking at all n^2 cosines in float32 pays.

    python benchmarks/matching.py                      # 4K..32K side by side, then 65K and 131K alone
    python benchmarks/matching.py --sizes 4096 --alone  # quick check
    python benchmarks/matching.py --real results/smollm2-135m/kjv-pydoc/layers.6.mlp/*/ --alone

`--real SET_DIR ...` matches dictionaries of real trained SAEs instead: every set's seed-0 checkpoint stacked into
one dictionary, every set's seed-1 checkpoint into the other (n = the sum of the sets' latents, d = the site's
width). Near-duplicate directions across sizes and seeds make nearest neighbours compete, as in real use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def synthetic_pair(n: int, d: int, seed: int, shared: float = 0.4, kind: str = "random") -> tuple[np.ndarray, ...]:
    """Returns (enc_a, dec_a, enc_b, dec_b) float32 [n, d]: a `shared` fraction of b copies a with noise.

    kind "random": unrelated latents are isotropic Gaussian directions (cosines ~ N(0, 1/d)).
    kind "correlated": every latent mixes 3 of 256 common directions, so unrelated latents have
    cosines up to ~0.8 and nearest neighbours compete (harder for every solver).
    """
    rng = np.random.default_rng(seed)
    m = int(shared * n)
    perm = rng.permutation(n)
    noise = rng.uniform(0.3, 1.2, (m, 1)).astype(np.float32)

    def latents(count: int, basis: np.ndarray | None) -> np.ndarray:
        w = rng.standard_normal((count, d), dtype=np.float32)
        if basis is None:
            return w
        pick = rng.integers(0, len(basis), (count, 3))
        mix = rng.uniform(0.5, 1.0, (count, 3, 1)).astype(np.float32)
        return (mix * basis[pick]).sum(axis=1) * np.sqrt(d, dtype=np.float32) + 0.5 * w

    out = []
    for _ in range(2):  # encoder, decoder
        basis = rng.standard_normal((256, d), dtype=np.float32) / np.sqrt(d) if kind == "correlated" else None
        a, b = latents(n, basis), latents(n, basis)
        scale = noise if basis is None else noise * np.linalg.norm(a[:m], axis=1, keepdims=True) / np.sqrt(d)
        b[perm[:m]] = a[:m] + scale * rng.standard_normal((m, d), dtype=np.float32)
        out.append((a, b))
    (enc_a, enc_b), (dec_a, dec_b) = out
    return enc_a, dec_a, enc_b, dec_b


def real_pair(set_dirs: list[str]) -> tuple[np.ndarray, ...]:
    """Returns (enc_a, dec_a, enc_b, dec_b): seed 0 of every set stacked, and seed 1 of every set stacked."""
    from saeseeds.matching.checkpoints import load_dictionaries

    sides = []
    for seed in (0, 1):
        pairs = [load_dictionaries(Path(d) / f"seed{seed}") for d in sorted(set_dirs) if (Path(d) / f"seed{seed}").is_dir()]
        sides.append((np.concatenate([e for e, _ in pairs]), np.concatenate([w for _, w in pairs])))
    (enc_a, dec_a), (enc_b, dec_b) = sides
    return enc_a, dec_a, enc_b, dec_b


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(
    method: str, n: int, d: int, seed: int, threads: int, kind: str = "random", real: list[str] | None = None, repeat: int = 1,
    screen: str = "auto",
) -> dict:
    """Returns timings, peak memory and the optimum reached by one method at one size (or on `real` sets)."""
    import torch

    torch.set_num_threads(threads)
    if real:
        enc_a, dec_a, enc_b, dec_b = real_pair(real)
        n, d, kind = len(enc_a), enc_a.shape[1], "real"
    else:
        enc_a, dec_a, enc_b, dec_b = synthetic_pair(n, d, seed, kind=kind)
    base_rss = peak_rss_gib()
    result: dict = {"method": method, "n": n, "d": d, "kind": kind, "input_rss_gib": base_rss}
    start = time.perf_counter()
    if method == "paper":
        from scipy.optimize import linear_sum_assignment

        from saeseeds.matching.similarity import quantize, unit_rows

        result["similarity_s"] = result["lsa_s"] = 0.0
        objectives, exact = [], []
        for wa, wb in ((enc_a, enc_b), (dec_a, dec_b)):
            t0 = time.perf_counter()
            ua, ub = unit_rows(wa, torch.device("cpu")), unit_rows(wb, torch.device("cpu"))
            # hungarian_aligmnent.py of SrGonao/sae_overlap, on CPU: 4096-row chunks into a float32
            # matrix, nan_to_num, then scipy with maximize=True.
            cost = torch.zeros(n, n)
            for r0 in range(0, n, 4096):
                cost[r0 : r0 + 4096] = ua[r0 : r0 + 4096] @ ub.T
            cost = torch.nan_to_num(cost, nan=0)
            t1 = time.perf_counter()
            rows, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            t2 = time.perf_counter()
            result["similarity_s"] += t1 - t0
            result["lsa_s"] += t2 - t1
            objectives.append(int(quantize(cost.numpy()[rows, cols]).sum()))
            exact.append(_exact_objective(ua, ub, rows, cols))
            del cost
        result["objective_quantised"] = objectives
        result["objective_exact"] = exact
        result["certified"] = None
    elif method == "scipy":
        from scipy.optimize import linear_sum_assignment

        from saeseeds.matching.similarity import quantize, unit_rows

        result["similarity_s"] = result["lsa_s"] = 0.0
        objectives, partners, exact = [], [], []
        for wa, wb in ((enc_a, enc_b), (dec_a, dec_b)):
            t0 = time.perf_counter()
            ua, ub = unit_rows(wa, torch.device("cpu")), unit_rows(wb, torch.device("cpu"))
            # The authors' chunked build, but straight into one negated float64 matrix: scipy
            # works in float64 anyway, and this avoids its float32 -> float64 and maximize copies
            # (20 bytes per pair with their recipe, 8 here), so 32K fits in this machine's memory.
            cost = np.empty((n, n), dtype=np.float64)
            for r0 in range(0, n, 4096):
                np.negative((ua[r0 : r0 + 4096] @ ub.T).numpy(), out=cost[r0 : r0 + 4096])
            t1 = time.perf_counter()
            rows, cols = linear_sum_assignment(cost)
            t2 = time.perf_counter()
            result["similarity_s"] += t1 - t0
            result["lsa_s"] += t2 - t1
            objectives.append(int(quantize((-cost[rows, cols]).astype(np.float32)).sum()))
            exact.append(_exact_objective(ua, ub, rows, cols))
            partners.append(cols)
            del cost
        result["objective_quantised"] = objectives
        result["objective_exact"] = exact
        result["certified"] = None
        shared = (partners[0] == partners[1]).mean()
        result["partners_agree"] = float(shared)
    else:
        from saeseeds.matching.match import match_dictionaries

        # Best of `repeat`, each run next to a floor measurement, so both see the same machine.
        floors, walls = [], []
        for _ in range(repeat):
            floors.append(fp32_floor((enc_a, enc_b), (dec_a, dec_b)))
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            df, meta = match_dictionaries(
                enc_a, dec_a, enc_b, dec_b, method="sparse", device="cpu", timings=timings, screen=screen
            )
            walls.append(time.perf_counter() - t0)
            if walls[-1] == min(walls):
                result |= {f"{k}_s": v for k, v in timings.items()}
        result |= {"floor_s": min(floors), "floors_s": floors, "walls_s": walls}
        cert = meta["certificate"]
        result["screen"] = cert["enc"]["screen"]
        result["screen_error_max"] = [cert["enc"]["screen_error_max"], cert["dec"]["screen_error_max"]]
        result["pairs_exact"] = [cert["enc"]["pairs_exact"], cert["dec"]["pairs_exact"]]
        result["objective_quantised"] = [cert["enc"]["objective_quantised"], cert["dec"]["objective_quantised"]]
        result["certified"] = meta["certified"]
        result["rounds"] = [cert["enc"]["rounds"], cert["dec"]["rounds"]]
        result["rows_rescreened"] = [cert["enc"]["rows_rescreened"], cert["dec"]["rows_rescreened"]]
        result["edges_added"] = [cert[x]["edges_final"] - cert[x]["edges_first"] for x in ("enc", "dec")]
        result["shared_fraction_paper"] = meta["shared_fraction_paper"]
        result["partners_agree"] = meta["partners_agree_fraction"]
    result["wall_s"] = min(walls) if method == "saeseeds" else time.perf_counter() - start
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def fp32_floor(*pairs) -> float:
    """Seconds of one float32 matmul pass over every cosine of each (a, b) pair, 1024-row blocks as saeseeds'.

    The floor any exact method pays that looks at all n^2 cosines in float32 (issue 21's yardstick).
    """
    import torch

    from saeseeds.matching.cosine_sources import ScreenedCosines
    from saeseeds.matching.similarity import unit_rows

    start = time.perf_counter()
    for wa, wb in pairs:
        source = ScreenedCosines(unit_rows(wa, torch.device("cpu")), unit_rows(wb, torch.device("cpu")), precision="fp32")
        for r0 in range(0, source.n, 1024):
            source.screen(np.arange(r0, min(r0 + 1024, source.n)))
    return time.perf_counter() - start


def _exact_objective(ua, ub, rows, cols) -> int:
    """The quantised objective of a matching on the exact cosines saeseeds matches (float64 products)."""
    from saeseeds.matching.cosine_sources import exact_cosines
    from saeseeds.matching.similarity import quantize

    return int(quantize(exact_cosines(ua, ub, rows, cols)).sum())


def bench_orphans(n: int = 131072, n_seeds: int = 9, seed: int = 0, repeats: int = 5) -> dict:
    """Returns the best-of-`repeats` seconds for both orphan tables at n latents x n_seeds seeds."""
    import itertools

    from saeseeds.stats.orphans import latent_table, subset_table

    rng = np.random.default_rng(seed)
    seeds = list(range(n_seeds))
    masks = {(a, b): rng.random(n) < 0.4 for a, b in itertools.permutations(seeds, 2)}
    firing = {s: rng.random(n) for s in seeds}
    best = {"subsets_s": np.inf, "latents_s": np.inf}
    for _ in range(repeats):
        t0 = time.perf_counter()
        subsets = subset_table(masks)
        t1 = time.perf_counter()
        latents = latent_table(masks, firing)
        t2 = time.perf_counter()
        best = {"subsets_s": min(best["subsets_s"], t1 - t0), "latents_s": min(best["latents_s"], t2 - t1)}
    return {"n": n, "seeds": n_seeds, "subset_rows": len(subsets), "latent_rows": len(latents)} | best


def run_one(method: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, str(n), "--d", str(args.d), "--seed", str(args.seed)]
    cmd += ["--threads", str(args.threads), "--kind", args.kind, "--repeat", str(args.repeat), "--screen", args.screen]
    cmd += ["--real", *args.real] if args.real else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"method": method, "n": n, "error": proc.stderr.strip().splitlines()[-1:] or ["killed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x, spec=".1f"):
    return "—" if x is None else format(x, spec)


def _dense_cell(r: dict | None) -> str:
    if r is None:
        return "not run"
    if "error" in r:
        return "failed: " + " ".join(r["error"])
    return f"{r['similarity_s']:.1f} + {r['lsa_s']:.1f} = {r['wall_s']:.1f} s, {r['peak_rss_gib']:.1f} GiB"


def table(rows: list[dict]) -> str:
    """Returns the markdown table for benchmarks/README.md."""
    by = {(r["method"], r["n"]): r for r in rows}
    lines = [
        "| n | paper recipe: similarity + LSA | scipy float64: similarity + LSA | saeseeds | speed-up vs paper / float64 "
        "| matmul floor | saeseeds / floor | certified (rounds enc/dec) | same optimum |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sorted({r["n"] for r in rows}):
        ss = by.get(("saeseeds", n))
        if ss is None or "error" in ss:
            lines.append(f"| {n:,} | | | failed: {' '.join(ss['error']) if ss else 'not run'} | | | | | |")
            continue
        dense = {m: by.get((m, n)) for m in ("paper", "scipy")}
        ok = {m: r for m, r in dense.items() if r and "error" not in r}
        speed = " / ".join(f"{ok[m]['wall_s'] / ss['wall_s']:.1f}x" if m in ok else "—" for m in ("paper", "scipy"))
        # saeseeds matches exact (float64-product) cosines, the dense recipes their float32 matmul: compare
        # on the exact cosines, where saeseeds' optimum must be at least theirs (equal unless near-ties).
        same = [ok[m].get("objective_exact", ok[m]["objective_quantised"]) == ss["objective_quantised"] for m in ok]
        floor = ss.get("floor_s", ss["similarity_s"])
        ratio = f"{ss['wall_s'] / floor:.2f}x"
        if len(ss.get("walls_s", [])) > 1:
            # Each run against the floor measured just before it: on a VM whose speed moves, the spread says more than the best.
            each = sorted(w / f for w, f in zip(ss["walls_s"], ss["floors_s"]))
            ratio += f" (each run {each[0]:.2f}-{each[-1]:.2f}x)"
        lines.append(
            f"| {n:,} | {_dense_cell(dense['paper'])} | {_dense_cell(dense['scipy'])} "
            f"| {ss['wall_s']:.1f} s, {ss['peak_rss_gib']:.1f} GiB | {speed} | {floor:.1f} s | {ratio} "
            f"| {'yes' if ss['certified'] else 'NO'} ({ss['rounds'][0]}/{ss['rounds'][1]}) "
            f"| {'—' if not same else ('yes' if all(same) else 'NO')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096, 8192, 16384, 32768], help="side-by-side sizes")
    parser.add_argument("--alone", type=int, nargs="*", default=[65536, 131072], help="saeseeds-only sizes")
    parser.add_argument(
        "--paper-max", type=int, default=16384, help="largest n for the paper's recipe (20 bytes per pair)"
    )
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=("random", "correlated"), default="random", help="synthetic dictionaries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real", nargs="+", default=None, help="set folders of real SAEs: seed0s stacked vs seed1s stacked")
    parser.add_argument("--repeat", type=int, default=1, help="saeseeds runs (each beside a floor pass); the best counts")
    parser.add_argument("--screen", default="auto", help="saeseeds' screening precision (auto, bf16, fp32, int8)")
    parser.add_argument("--out", type=Path, default=OUT / "matching.json")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of saved runs (later files win)")
    args = parser.parse_args()
    if args.table:
        merged = {}
        for path in args.table:
            for row in json.loads(path.read_text())["rows"]:
                merged[(row["method"], row["n"])] = row
        print(table(list(merged.values())))
        return
    if args.worker:
        method, n = args.worker[0], int(args.worker[1])
        print(json.dumps(worker(method, n, args.d, args.seed, args.threads, args.kind, args.real, args.repeat, args.screen)))
        return
    if args.real:  # one size, the data's: saeseeds, scipy float64 and the paper's recipe side by side
        args.sizes, args.alone, args.paper_max = [0], [], 1 << 62
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    plan = []
    for n in args.sizes:
        plan += [("saeseeds", n), ("scipy", n)] + ([("paper", n)] if n <= args.paper_max else [])
    plan += [("saeseeds", n) for n in args.alone]
    info = {"cpu_count": os.cpu_count(), "threads": args.threads, "load_at_start": os.getloadavg()}
    info["orphans"] = bench_orphans()
    print(json.dumps(info), flush=True)
    for method, n in plan:
        rows.append(run_one(method, n, args) | {"load_after": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
        args.out.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    print(table(rows))
    o = info["orphans"]
    print(
        f"orphan tables, {o['n']:,} latents x {o['seeds']} seeds: subsets ({o['subset_rows']} rows) "
        f"{o['subsets_s']:.3f} s, latents ({o['latent_rows']:,} rows) {o['latents_s']:.3f} s"
    )


if __name__ == "__main__":
    main()

"""Matching the latents of two SAEs: encoder and decoder Hungarian matchings, max-cos, shared flags.

The output is one row per latent of SAE a with the columns of the matches contract
(`latent, enc_partner, enc_cos, dec_partner, dec_cos, enc_maxcos, dec_maxcos, shared`), written
as parquet with the run's metadata (threshold, definition, both shared fractions, the optimality
certificate of each matching) as JSON under the parquet key-value metadata key b"saeseeds".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from saeseeds.matching.assignment import (
    PAD_COSINE, RESERVE_DEPTH, Assignment, ScreenedProblem, assign_dense, screen_problem, solve_screened, unpad,
)
from saeseeds.matching.cosine_sources import PRECISIONS, AbsoluteCosines, PaddedCosines
from saeseeds.matching.matches_file import DEFINITIONS, MatchesError, shared_flags
from saeseeds.matching.screen_choice import screen_source
from saeseeds.matching.screen_memory import current_pool, reuse_screen_memory, screen_memory_of
from saeseeds.matching.similarity import dense_cosines, resolve_device, timed, unit_rows

DENSE_MAX_N = 4096
"""Up to this many latents the full cosine matrix goes to scipy; above it, the sparse certified path."""


def _check_inputs(enc_a, dec_a, enc_b, dec_b, threshold, definition) -> tuple[int, int, int]:
    arrays = {"enc_a": enc_a, "dec_a": dec_a, "enc_b": enc_b, "dec_b": dec_b}
    shapes = {name: np.shape(x) for name, x in arrays.items()}
    if (
        shapes["enc_a"] != shapes["dec_a"] or shapes["enc_b"] != shapes["dec_b"]
        or any(len(v) != 2 or 0 in v for v in shapes.values())
        or shapes["enc_a"][1] != shapes["enc_b"][1]
    ):
        raise MatchesError(
            f"dictionaries must be non-empty [n, d] with one d and one n per SAE (encoder = decoder shape), got {shapes}"
        )
    for name, x in arrays.items():
        if not np.isfinite(x).all():
            raise MatchesError(f"{name}: has non-finite values")
    if not (np.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise MatchesError(f"threshold={threshold!r}: must be a cosine in [-1, 1]")
    if definition not in DEFINITIONS:
        raise MatchesError(f"definition={definition!r}: must be one of {DEFINITIONS}")
    return shapes["enc_a"][0], shapes["enc_b"][0], shapes["enc_a"][1]


def match_rows(
    wa: np.ndarray,
    wb: np.ndarray,
    *,
    device: torch.device,
    method: str = "auto",
    dense_max_n: int = DENSE_MAX_N,
    k: int = 32,
    depth: int = RESERVE_DEPTH,
    block_rows: int = 1024,
    max_rounds: int = 100,
    screen: str = "auto",
    timings: dict[str, float] | None = None,
    absolute: bool = False,
) -> Assignment:
    """Returns the exact maximum-cosine matching of the rows of wa to the rows of wb (of |cosine| when
    `absolute`: PW-MCC's matching, where a flipped direction counts as the same feature).

    Different sizes are matched rectangularly (every row of the smaller side gets a partner; rows of
    a left over get partner -1). The sparse path pads the smaller side with dummy latents whose
    cosine with everything is one constant, which keeps the square optimum, and its certificate,
    exact for the rectangle (the padding is applied after the absolute value, so dummies stay below
    every real |cos|). `screen` is the sparse path's screening precision (`screen_choice`): "bf16"
    where the hardware multiplies it natively ("auto"), else "int8" on a CPU where it pays (neighbours
    compete, or its bound is small beside unrelated directions' spread), else "fp32"; it changes speed, never the optimum, which is always over the exact cosines.
    """
    started = _start_rows(
        wa, wb, device=device, method=method, dense_max_n=dense_max_n, k=k, depth=depth, block_rows=block_rows,
        screen=screen, timings=timings, absolute=absolute,
    )
    return _finish(started, max_rounds, timings)


@dataclass
class _Screened:
    """A sparse matching whose screening pass has run: its solve (and unpadding to n_a x n_b) is what is left."""

    problem: ScreenedProblem
    n_a: int
    n_b: int


def _resolved_method(method: str, n: int, dense_max_n: int) -> str:
    """Returns "dense" or "sparse": "auto" takes the dense path up to `dense_max_n` latents on the larger side."""
    if method == "auto":
        return "dense" if n <= dense_max_n else "sparse"
    return method


def _start_rows(
    wa, wb, *, device, method, dense_max_n, k, depth, block_rows, screen, timings, absolute
) -> Assignment | _Screened:
    """Runs `match_rows` up to the end of the sparse path's screening pass (the dense path all the way)."""
    if method not in ("auto", "dense", "sparse"):
        raise MatchesError(f"method={method!r}: must be 'auto', 'dense' or 'sparse'")
    if screen not in PRECISIONS:
        raise MatchesError(f"screen={screen!r}: must be one of {PRECISIONS}")
    n_a, n_b = wa.shape[0], wb.shape[0]
    n = max(n_a, n_b)
    method = _resolved_method(method, n, dense_max_n)
    ua, ub = unit_rows(wa, device), unit_rows(wb, device)
    if method == "dense":
        with timed(timings, "similarity"):
            sim = dense_cosines(ua, ub)
            sim = np.abs(sim) if absolute else sim
        with timed(timings, "solve"):
            return assign_dense(sim)
    if n_a != n_b:
        # Zero rows make the problem square; PaddedCosines then sets every dummy cell.
        ua = torch.cat([ua, ua.new_zeros((n - n_a, ua.shape[1]))])
        ub = torch.cat([ub, ub.new_zeros((n - n_b, ub.shape[1]))])
    source = screen_source(ua, ub, screen, depth)
    if absolute:
        source = AbsoluteCosines(source)
    if n_a != n_b:
        source, depth = PaddedCosines(source, n_a, n_b, PAD_COSINE), min(depth, min(n_a, n_b))
    return _Screened(screen_problem(source, k=k, depth=depth, block_rows=block_rows, timings=timings), n_a, n_b)


def _finish(started: Assignment | _Screened, max_rounds: int, timings: dict[str, float] | None) -> Assignment:
    """Returns the matching `_start_rows` began: a dense one as it is, a sparse one solved, certified and unpadded."""
    if isinstance(started, Assignment):
        return started
    square = solve_screened(started.problem, max_rounds=max_rounds, timings=timings)
    return square if started.n_a == started.n_b else unpad(square, started.n_a, started.n_b)


def _solves_side_by_side() -> bool:
    """True where a job has two cores or more for its two solves and numba allows two threads to launch kernels."""
    from saeseeds.common.hardware import numba_kernels_run_side_by_side

    return torch.get_num_threads() >= 2 and numba_kernels_run_side_by_side()


def _finish_side_by_side(started: list, max_rounds: int, timings: dict[str, float] | None) -> list[Assignment]:
    """Finishes the encoder's and the decoder's matchings in two threads (after passes on a GPU; on CPU each side
    runs in its own thread from the start, `_match_sides_on_their_own_cores`).

    A solve runs mostly on one core (the augmenting paths are serial), so the two solves side by side take little
    more than the longer one. On CPU, before each side had its own thread from its pass on, seconds after the passes,
    medians alternated with one solve after the other (`benchmarks/solves_side_by_side.py`, 2-core EPYC): the default
    study's stacked 6,048-latent set 0.70 -> 0.54, real 16K 1.01 -> 0.73, correlated 16K 2.00 -> 1.71 (with 0.21 s
    more of first touches: the second stored screen is fresh memory), random 16K 1.05 -> 0.78. Each matching's
    result is the same either way; `timings` then sums both threads' seconds.
    """
    from saeseeds.common.hardware import numba_threads_as_torch

    def finish(i: int, own: dict | None) -> Assignment:
        numba_threads_as_torch()  # numba's thread count is per thread
        return _finish(started[i], max_rounds, own)

    return _in_threads(finish, len(started), timings)


def _in_threads(work, count: int, timings: dict[str, float] | None) -> list:
    """Returns [work(i, own_timings_i) for i < count], each call in a thread of its own; adds each thread's seconds per
    phase into `timings` (when the caller asked for them)."""
    from concurrent.futures import ThreadPoolExecutor

    own = [None if timings is None else {} for _ in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(work, range(count), own))
    if timings is not None:
        for part in own:
            for key, seconds in part.items():
                timings[key] = timings.get(key, 0.0) + seconds
    return results


def _match_both(pairs, opts: dict, max_rounds: int, sparse: bool) -> tuple[Assignment, Assignment]:
    """Returns the encoder's and the decoder's matchings, in the order that suits the device and the job's cores.

    On CPU with two cores or more, each side runs in a thread of its own from its pass to its solve, on half the
    cores (`_match_sides_on_their_own_cores`); on a GPU both passes run there first, then both solves side by side
    on the CPU (`_finish_side_by_side`); a one-core job matches one side after the other, holding one stored screen
    at a time (`plan.estimates.match_mem_mb` counts one).
    """
    (enc_a, enc_b), (dec_a, dec_b) = pairs
    timings = opts["timings"]
    if sparse and opts["device"].type == "cpu" and _solves_side_by_side():
        return _match_sides_on_their_own_cores(pairs, opts, max_rounds)
    enc = _start_rows(enc_a, enc_b, **opts)
    if isinstance(enc, _Screened) and _solves_side_by_side():
        enc, dec = _finish_side_by_side([enc, _start_rows(dec_a, dec_b, **opts)], max_rounds, timings)
        return enc, dec
    enc = _finish(enc, max_rounds, timings)
    return enc, _finish(_start_rows(dec_a, dec_b, **opts), max_rounds, timings)


def _match_sides_on_their_own_cores(pairs, opts: dict, max_rounds: int) -> tuple[Assignment, Assignment]:
    """Matches the encoder's rows and the decoder's in two threads, each on half the job's cores from pass to solve
    (the decoder's the odd one).

    A pass on two cores was 1.6x its time on one (the stacked set's decoder: 0.30 -> 0.18-0.20 s; the float32
    floor 1.9x): its reductions and glue do not split as well as its products. Both passes at once on one core
    each took 0.31-0.37 s against 0.35-0.38 s one after the other on both, and each solve starts as soon as its
    own pass ends. The result is the same as one side after the other (tested): no reduction depends on the
    thread count. `timings` then sums both threads' seconds.
    """
    from saeseeds.common.hardware import numba_threads_as_torch

    cores = torch.get_num_threads()
    shares = [max(1, cores // 2), max(1, cores - cores // 2)]  # an odd core to the decoder's side, usually the longer
    pool = current_pool()

    def side(i: int, own: dict | None) -> Assignment:
        torch.set_num_threads(shares[i])  # OpenMP's thread count is the calling thread's: the job's other threads keep theirs
        numba_threads_as_torch()
        with screen_memory_of(pool):
            return _finish(_start_rows(*pairs[i], **(opts | {"timings": own})), max_rounds, own)

    enc, dec = _in_threads(side, len(pairs), opts["timings"])
    return enc, dec


def match_dictionaries(
    enc_a: np.ndarray,
    dec_a: np.ndarray,
    enc_b: np.ndarray,
    dec_b: np.ndarray,
    *,
    threshold: float = 0.7,
    definition: str = "paper",
    device: str | torch.device | None = None,
    method: str = "auto",
    dense_max_n: int = DENSE_MAX_N,
    k: int = 32,
    depth: int = RESERVE_DEPTH,
    block_rows: int = 1024,
    max_rounds: int = 100,
    screen: str = "auto",
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Returns (matches DataFrame, metadata) for SAE a against SAE b, one row per latent of a.

    Encoder rows are matched to encoder rows and decoder rows to decoder rows, each by an exact
    maximum-total-cosine bijection (rectangular when the SAEs differ in size: every latent of the
    smaller one gets a partner, the latents of a left over get partner -1 and cosine NaN, and the
    metadata adds `n_b` and the shared fractions of b's latents). `method` "auto" uses dense scipy up to `dense_max_n`
    latents and the certified sparse path above; `k` (candidates per row and column), `depth`
    (reserve per row), `block_rows` and `screen` (the screening pass's precision) tune the sparse
    path's speed only, never its result's value;
    `max_rounds` caps the sparse path's repair rounds (an uncertified result says so in its metadata,
    and `write_matches` refuses it).
    `timings`, when given, collects seconds per phase (benchmarks); it never enters the metadata,
    which stays byte-for-byte reproducible.
    """
    n, n_b, d = _check_inputs(enc_a, dec_a, enc_b, dec_b, threshold, definition)
    dev = resolve_device(device)
    opts = dict(
        device=dev, method=method, dense_max_n=dense_max_n, k=k, depth=depth, block_rows=block_rows, screen=screen,
        timings=timings, absolute=False,
    )
    with reuse_screen_memory():  # a job's matchings reuse their stored screens' memory
        sparse = _resolved_method(method, max(n, n_b), dense_max_n) == "sparse"
        enc, dec = _match_both(((enc_a, enc_b), (dec_a, dec_b)), opts, max_rounds, sparse=sparse)
    flags = {
        name: shared_flags(enc.partner, enc.cos, dec.partner, dec.cos, threshold, name) for name in DEFINITIONS
    }
    df = pd.DataFrame(
        {
            "latent": np.arange(n, dtype=np.int64),
            "enc_partner": enc.partner.astype(np.int64),
            "enc_cos": enc.cos.astype(np.float32),
            "dec_partner": dec.partner.astype(np.int64),
            "dec_cos": dec.cos.astype(np.float32),
            "enc_maxcos": enc.row_max.astype(np.float32),
            "dec_maxcos": dec.row_max.astype(np.float32),
            "shared": flags[definition],
        }
    )
    metadata = {
        "n": int(n),
        "d": int(d),
        "threshold": float(threshold),
        "definition": definition,
        "shared_fraction_paper": float(flags["paper"].mean()),
        "shared_fraction_notebook": float(flags["notebook"].mean()),
        "partners_agree_fraction": float(((enc.partner == dec.partner) & (enc.partner >= 0)).mean()),
        "dead_latents": {
            "enc_a": int((~enc_a.any(axis=1)).sum()),
            "dec_a": int((~dec_a.any(axis=1)).sum()),
            "enc_b": int((~enc_b.any(axis=1)).sum()),
            "dec_b": int((~dec_b.any(axis=1)).sum()),
        },
        "certificate": {"enc": enc.certificate, "dec": dec.certificate},
        "certified": bool(enc.certificate["certified"] and dec.certificate["certified"]),
    }
    if n_b != n:
        # Shared latents pair one latent of a with one of b, so per side only the denominator differs.
        metadata |= {
            "n_b": int(n_b),
            "shared_fraction_paper_b": float(flags["paper"].sum() / n_b),
            "shared_fraction_notebook_b": float(flags["notebook"].sum() / n_b),
        }
    return df, metadata

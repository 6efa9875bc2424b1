"""The matches file: its columns and dtypes, the shared flag, and reading and writing it (no torch).

One row per latent of SAE a (`latent, enc_partner, enc_cos, dec_partner, dec_cos, enc_maxcos, dec_maxcos,
shared`), parquet with the run's metadata as JSON under the key b"saeseeds". Kept apart from
`saeseeds.matching.match`, which computes matchings with torch, so the jobs that only read matches (orphans,
recovery summaries, figures) start without importing torch; `saeseeds.matching.match` re-exports every name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.common.atomic import METADATA_KEY, read_parquet_with_metadata, write_parquet_with_metadata
from saeseeds.errors import MatchesError, UncertifiedMatching  # noqa: F401 (raised here; importable from here too)

COLUMNS = ("latent", "enc_partner", "enc_cos", "dec_partner", "dec_cos", "enc_maxcos", "dec_maxcos", "shared")
DTYPES = {
    "latent": "int64",
    "enc_partner": "int64",
    "enc_cos": "float32",
    "dec_partner": "int64",
    "dec_cos": "float32",
    "enc_maxcos": "float32",
    "dec_maxcos": "float32",
    "shared": "bool",
}
DEFINITIONS = ("paper", "notebook")


def certificate_problem(metadata: dict) -> str | None:
    """Returns one line saying which matching is not certified and how far it got, or None when it is certified.

    Shared fractions from a matching that is not proven optimal could be off by any amount, so they
    are never written: the line names the seeds (or the label), latents, repair rounds and the gap
    bound, which is what a user needs to decide between more rounds (`max_rounds`) and a bug report.
    """
    if metadata.get("certified") is True:
        return None
    who = (
        f"seed{metadata['seed_a']} vs seed{metadata['seed_b']}"
        if "seed_a" in metadata and "seed_b" in metadata
        else str(metadata.get("label", "matching"))
    )
    parts = []
    for side, cert in sorted(metadata.get("certificate", {}).items()):
        if cert.get("certified"):
            parts.append(f"{side}: certified")
            continue
        gap = cert.get("gap_bound")
        gap_text = "unbounded" if gap is None else f"<= {gap:.6g} summed cosine"
        parts.append(f"{side}: NOT certified after {cert.get('rounds')} rounds, gap {gap_text}")
    n = metadata.get("n_a", metadata.get("n"))
    return (
        f"{who}: matching of {n} latents is not certified optimal ({'; '.join(parts) or 'no certificate'}); "
        "no statistics are computed from it (raise max_rounds, or report it as a bug)"
    )


def shared_flags(
    enc_partner: np.ndarray,
    enc_cos: np.ndarray,
    dec_partner: np.ndarray,
    dec_cos: np.ndarray,
    threshold: float,
    definition: str,
) -> np.ndarray:
    """Returns the bool `shared` flag of each latent under the chosen definition.

    "paper" (the paper's text): same partner in both matchings and both cosines >= threshold.
    "notebook" (the authors' released notebook): both cosines > threshold, partners may differ.
    """
    if definition == "paper":
        return (enc_partner == dec_partner) & (enc_cos >= threshold) & (dec_cos >= threshold)
    if definition == "notebook":
        return (enc_cos > threshold) & (dec_cos > threshold)
    raise MatchesError(f"definition={definition!r}: must be one of {DEFINITIONS}")


def _check_frame(df: pd.DataFrame, where: str) -> None:
    if tuple(df.columns) != COLUMNS:
        raise MatchesError(f"{where}: columns {list(df.columns)} differ from the contract {list(COLUMNS)}")
    for col, dtype in DTYPES.items():
        if str(df[col].dtype) != dtype:
            raise MatchesError(f"{where}: column {col!r} has dtype {df[col].dtype}, contract says {dtype}")


def write_matches(df: pd.DataFrame, metadata: dict, path: str | Path) -> None:
    """Writes the matches as parquet with `metadata` as JSON under key b"saeseeds", atomically.

    An uncertified matching raises `UncertifiedMatching` and nothing is written, so every statistic
    downstream (orphans, summary, figures) reads proven-optimal matchings only.
    """
    _check_frame(df, str(path))
    problem = certificate_problem(metadata)
    if problem:
        raise UncertifiedMatching(f"{path}: {problem}")
    write_parquet_with_metadata(df, metadata, path)


def read_matches(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Returns (DataFrame, metadata) from a matches parquet file, checking the column contract."""
    path = Path(path)
    if not path.is_file():
        raise MatchesError(f"{path}: no such matches file")
    df, metadata = read_parquet_with_metadata(path)
    if metadata is None:
        raise MatchesError(f"{path}: parquet metadata key {METADATA_KEY!r} missing")
    _check_frame(df, str(path))
    problem = certificate_problem(metadata)
    if problem:
        raise UncertifiedMatching(f"{path}: {problem}")
    return df, metadata


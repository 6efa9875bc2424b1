"""Where a checkpoint is: a local folder or file, a glob of them, or a Hugging Face hub reference.

Hub references read `hf://owner/repo@revision/path/in/repo`. The revision is required (a branch
moves; a result must say which weights it came from), only the files under `path` are fetched
(`snapshot_download` with `allow_patterns`), and the commit the revision resolved to is returned so
that it can be written next to the results.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from saeseeds.matching.checkpoints import CheckpointError
from saeseeds.common.logs import first_line

HUB_PREFIX = "hf://"
_HUB = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)@(?P<rev>[\w.-]+)(?:/(?P<path>.*?))?/?$")


@dataclass(frozen=True)
class Resolved:
    """A checkpoint reference made local."""

    reference: str
    """As the user gave it."""
    path: Path
    """The local folder or file to read."""
    commit: str | None = None
    """The hub commit the revision resolved to; None for local checkpoints."""

    def provenance(self) -> dict:
        """Returns what is written next to results: the reference, the local path and the resolved commit."""
        return {"reference": self.reference, "path": str(self.path), "commit": self.commit}


def is_hub(ref: str) -> bool:
    """Returns whether `ref` names a hub checkpoint (hf://...)."""
    return str(ref).startswith(HUB_PREFIX)


def parse_hub(ref: str) -> tuple[str, str, str]:
    """Returns (repo id, revision, path in repo) of a hub reference, or raises naming it."""
    m = _HUB.match(ref)
    if not m:
        raise CheckpointError(
            f"{ref}: not a hub reference of the form hf://owner/repo@revision/path (the revision is required: "
            "a branch, tag or commit)"
        )
    return m["repo"], m["rev"], m["path"] or ""


def resolve(ref: str | Path, *, cache_dir: str | Path | None = None) -> Resolved:
    """Returns the local checkpoint `ref` names, downloading a hub reference's files (pinned revision) first.

    Offline, or for a repo, revision or path the hub does not have, raises one line naming the reference.
    """
    ref = str(ref)
    if not is_hub(ref):
        return Resolved(ref, Path(ref))
    repo, revision, sub = parse_hub(ref)
    try:
        from huggingface_hub import snapshot_download

        local = Path(
            snapshot_download(
                repo, revision=revision, allow_patterns=[f"{sub}/*", sub] if sub else None,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
        )
    except Exception as err:  # offline, unknown repo or revision, gated: the hub's own first line says which
        raise CheckpointError(f"{ref}: cannot fetch from the Hugging Face hub ({type(err).__name__}: {first_line(err)})") from err
    path = local / sub if sub else local
    if not path.exists():
        raise CheckpointError(f"{ref}: the hub repo {repo}@{revision} has no {sub!r}")
    # snapshot_download returns .../snapshots/<commit>: the commit the revision pointed to when fetched.
    return Resolved(ref, path, local.name)


def expand(patterns: list[str]) -> list[str]:
    """Returns the checkpoint references of a list, each glob (local only) replaced by its sorted matches.

    A glob that matches nothing is an error: an empty set of seeds would otherwise go unnoticed.
    """
    out: list[str] = []
    for pattern in patterns:
        if not is_hub(pattern) and glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise CheckpointError(f"{pattern}: the glob matches no checkpoint")
            out += found
        else:
            out.append(pattern)
    return out

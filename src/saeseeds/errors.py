"""Every error saeseeds raises on purpose, in one module that imports nothing of the project.

Each names what is wrong (the config key, the file, the seed, the step) in its message; the CLI and the rules
turn them into one-line errors with exit status 2. Modules raise them and re-export them where they were defined
before, so `from saeseeds.activations.store import StoreError` keeps working.
"""

from __future__ import annotations


class OutputError(OSError):
    """An output that could not be written (disk full, quota, permissions); the message names it."""


class ConfigError(ValueError):
    """A config value that is wrong; the message names the key."""


class ChecksumError(ValueError):
    """A store whose chunks are missing, truncated or altered; the message names the chunk."""


class StoreError(ValueError):
    """A store that is missing, incomplete or inconsistent with its attrs."""


class BackendError(ValueError):
    """A backend that cannot be built from its settings; the message names the key."""


class BrowserError(ValueError):
    """Inputs of the browser that are missing or inconsistent; the message names the file or seed."""


class CheckpointError(ValueError):
    """A checkpoint folder that is missing a file or tensor, or holds inconsistent tensors."""


class MatchesError(ValueError):
    """A matches file or matching input that breaks the contract."""


class CalibrationError(ValueError):
    """No finished run to measure, or a metrics file that lacks what the cost model needs (named)."""


class PlanError(RuntimeError):
    """The dry run failed; the message carries Snakemake's own error."""


class NonFiniteBatch(ValueError):
    """A training batch holding NaN or inf; `step` is the optimiser step that would have read it."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class SaeConfigError(ValueError):
    """An SAE config or checkpoint that cannot describe a valid SAE."""


class SnapshotError(ValueError):
    """A snapshot setting that cannot work, or a snapshots folder that breaks its layout."""


class TrainConfigError(ValueError):
    """A training config value that cannot work, named by its key."""


class TrainingDiverged(FloatingPointError):
    """NaN or inf in a batch, a loss or a gradient; the message names the site, step and seeds."""


class BimodalityError(ValueError):
    """A sample the statistics cannot be computed on."""


class OrphansError(ValueError):
    """Inputs to the orphan statistics that are missing or inconsistent."""


class SyntheticError(ValueError):
    """Synthetic-source parameters that cannot be generated; the message names the key."""


class RecoveryError(ValueError):
    """Inputs to the recovery analysis that are missing or inconsistent."""


class UncertifiedMatching(MatchesError):
    """A matching whose optimality the sparse path could not prove: no statistic may be computed from it."""

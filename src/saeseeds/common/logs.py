"""Per-rule logging: every workflow script sends its log records, warnings and progress bars to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from saeseeds.common import progress
from saeseeds.common.process_exit import skip_final_collections
from saeseeds.errors import CheckpointError, ConfigError, MatchesError, OutputError, StoreError, TrainConfigError, TrainingDiverged


@contextlib.contextmanager
def rule_log(path: str | Path | None, name: str = "saeseeds", progress_every: float | None = None) -> Iterator[logging.Logger]:
    """Yields a logger writing to `path`; stderr (tqdm bars, warnings, tracebacks) goes there too.

    Progress bars made with `saeseeds.common.progress.ProgressBar` also print a short line to the stderr this replaces
    (the terminal of a local run) every `progress_every` seconds (default `progress.EVERY_SECONDS`).
    """
    skip_final_collections()  # every job script enters here: its teardown need not walk torch's heap
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    if path is None:
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.captureWarnings(True)
        old_stderr, sys.stderr = sys.stderr, stream
        echo = progress.echo_to(old_stderr, progress.job_label(path), progress_every if progress_every is not None else progress.EVERY_SECONDS)
        try:
            with echo:
                yield logger
        except BaseException as err:
            logger.exception("failed")
            if isinstance(err, NAMED_ERRORS):
                # The message names the culprit; the traceback stays in the log file, out of the way.
                sys.stderr = old_stderr
                raise SystemExit(f"{type(err).__name__}: {err}") from None
            raise
        finally:
            sys.stderr = old_stderr
            logging.getLogger().removeHandler(handler)


NAMED_ERRORS: tuple[type[BaseException], ...] = (
    OutputError, CheckpointError, StoreError, ConfigError, TrainingDiverged, TrainConfigError, MatchesError)
"""The error types whose message alone says what is wrong and where (file, key, step): a rule that raises one
exits with that line, the traceback staying in the log file."""


def first_line(err: BaseException) -> str:
    """Returns the first line of an error's message (hub errors run to many lines), or its type's name when empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

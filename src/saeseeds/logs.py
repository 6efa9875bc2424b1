"""Per-rule logging: every workflow script sends its log records, warnings and progress bars to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def rule_log(path: str | Path | None, name: str = "saeseeds") -> Iterator[logging.Logger]:
    """Yields a logger writing to `path`; stderr (tqdm bars, warnings, tracebacks) goes there too."""
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
        try:
            yield logger
        except BaseException:
            logger.exception("failed")
            raise
        finally:
            sys.stderr = old_stderr
            logging.getLogger().removeHandler(handler)

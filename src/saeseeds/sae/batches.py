"""The training data order and a prefetching reader of the activation store.

The order is a pure function of (data_seed, n_train, store chunk size, batch size, window): every init
seed of a study reads exactly the same rows in the same order. Shuffling is two-level so reads stay
contiguous: each epoch permutes the store's chunks, groups them into windows of about `window_rows`
rows, and permutes the rows inside each window. Batches run on across window and epoch boundaries.

With `context_length` set (`batch_order: sequences`) the unit shuffled inside a window is a whole context
of that many rows instead of a row, so every batch (a multiple of the context length) is whole sequences
in their token order, as the paper's trainer fed them; the chunk order is drawn as in token order.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from saeseeds.activations.store import ActivationStore
from saeseeds.errors import NonFiniteBatch  # noqa: F401 (raised here; importable from here too)


@dataclass(frozen=True)
class Window:
    """Chunks read together: `rows[perm]` are the global row indices in training order."""

    chunks: tuple[int, ...]
    rows: np.ndarray
    perm: np.ndarray


class BatchPlan:
    """The order of training rows, `num_steps` batches of `batch_size` rows drawn from `data_seed`."""

    def __init__(self, n_train: int, chunk_rows: int, batch_size: int, num_steps: int, *, data_seed: int, window_rows: int, context_length: int | None = None):
        for name, value in (("n_train", n_train), ("chunk_rows", chunk_rows), ("batch_size", batch_size), ("num_steps", num_steps), ("window_rows", window_rows)):
            if value < 1:
                raise ValueError(f"{name}={value}: expected a positive integer")
        if context_length is not None:
            L = int(context_length)
            if L < 1 or n_train % L or chunk_rows % L or batch_size % L:
                raise ValueError(f"context_length={context_length}: n_train ({n_train}), chunk_rows ({chunk_rows}) and batch_size ({batch_size}) must be whole contexts")
        self.context_length = None if context_length is None else int(context_length)
        self.n_train, self.chunk_rows = int(n_train), int(chunk_rows)
        self.batch_size, self.num_steps = int(batch_size), int(num_steps)
        self.data_seed = int(data_seed)
        self.window_chunks = max(1, int(window_rows) // self.chunk_rows)
        self.n_chunks = -(-self.n_train // self.chunk_rows)

    def epoch_windows(self, epoch: int) -> list[Window]:
        """Returns the windows of one epoch; drawn from (data_seed, epoch) alone."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.data_seed, epoch])))
        order = rng.permutation(self.n_chunks)
        windows = []
        for start in range(0, self.n_chunks, self.window_chunks):
            chunks = tuple(int(c) for c in order[start : start + self.window_chunks])
            rows = np.concatenate([np.arange(c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.n_train)) for c in chunks])
            if self.context_length is None:
                perm = rng.permutation(len(rows))
            else:  # whole contexts: permute context starts, keep each context's rows in order
                L = self.context_length
                perm = (rng.permutation(len(rows) // L)[:, None] * L + np.arange(L)).reshape(-1)
            windows.append(Window(chunks, rows, perm))
        return windows

    def windows_from(self, step: int) -> Iterator[tuple[Window, int, int]]:
        """Yields (window, first row offset used, number of rows used) covering batches step.. num_steps."""
        begin, end = step * self.batch_size, self.num_steps * self.batch_size
        pos, epoch = 0, 0
        while pos < end:
            if pos + self.n_train <= begin:  # skip whole epochs without drawing their windows' data
                pos += self.n_train
                epoch += 1
                continue
            for window in self.epoch_windows(epoch):
                size = len(window.rows)
                lo, hi = max(begin, pos), min(end, pos + size)
                if lo < hi:
                    yield window, lo - pos, hi - lo
                pos += size
                if pos >= end:
                    return
            epoch += 1

    def indices(self, start_step: int = 0) -> Iterator[np.ndarray]:
        """Yields the global row indices of each batch from `start_step` on."""
        pending: list[np.ndarray] = []
        have = 0
        for window, offset, count in self.windows_from(start_step):
            pending.append(window.rows[window.perm[offset : offset + count]])
            have += count
            while have >= self.batch_size:
                block = np.concatenate(pending)
                yield block[: self.batch_size]
                pending, have = [block[self.batch_size :]], have - self.batch_size

    def sha256(self) -> str:
        """Returns the sha256 of all batches' row indices (int64 little-endian, in order)."""
        digest = hashlib.sha256()
        for idx in self.indices():
            digest.update(idx.astype("<i8").tobytes())
        return digest.hexdigest()


class BatchReader:
    """Iterates float32 batches [batch_size, d] of a store in `plan` order, reading ahead in a thread.

    The thread reads whole windows (contiguous chunk reads, decompressed outside the GIL) and queues
    ready batches, so the training step rarely waits on I/O.
    """

    def __init__(self, store: ActivationStore, plan: BatchPlan, *, start_step: int = 0, prefetch: int = 4, device: str | torch.device = "cpu"):
        self.store, self.plan, self.start_step = store, plan, start_step
        self._next_step = start_step
        self.device = torch.device(device)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saeseeds-batch-reader", daemon=True)
        self._thread.start()

    def _read_window(self, window: Window) -> np.ndarray:
        R, arr = self.plan.chunk_rows, self.store.array
        return np.concatenate([arr[c * R : min((c + 1) * R, self.plan.n_train)] for c in window.chunks])

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            B = self.plan.batch_size
            carry = np.empty((0, self.store.d_in), dtype=self.store.array.dtype)
            for window, offset, count in self.plan.windows_from(self.start_step):
                data = self._read_window(window)
                idx = window.perm[offset : offset + count]
                pos = 0
                if len(carry):
                    take = min(B - len(carry), count)
                    carry = np.concatenate([carry, data[idx[:take]]])
                    pos = take
                    if len(carry) == B:
                        if not self._emit(carry):
                            return
                        carry = carry[:0]
                # gather one batch at a time so only the window itself is held, not a permuted copy
                while pos + B <= count:
                    if not self._emit(data[idx[pos : pos + B]]):
                        return
                    pos += B
                if pos < count:
                    carry = np.concatenate([carry, data[idx[pos:]]])
            self._put(None)
        except BaseException as err:  # surfaced in the consumer thread
            self._put(err)

    def _emit(self, rows: np.ndarray) -> bool:
        step, self._next_step = self._next_step, self._next_step + 1
        if not np.isfinite(rows).all():
            raise NonFiniteBatch(f"{self.store.path}: non-finite activations in the batch of step {step}", step)
        batch = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return self._put(batch)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stops the reader thread (safe to call twice)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "BatchReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

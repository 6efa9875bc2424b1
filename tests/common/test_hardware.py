"""numba's kernels take the job's thread count and leave torch's as the job set it."""

import subprocess
import sys

NEW_PROCESS = """
import torch
torch.set_num_threads(1)
from saeseeds.sae.fp32_topk import topk_with_bias
topk_with_bias(torch.randn(8, 64), torch.zeros(64), 2)  # launches numba's OpenMP pool in this process
import numba
print(torch.get_num_threads(), numba.get_num_threads())
"""


def test_launching_numbas_pool_keeps_torchs_thread_count():
    """The pool shares torch's OpenMP runtime and its launch resets the runtime to every core: a 1-thread job must stay at 1."""
    proc = subprocess.run([sys.executable, "-c", NEW_PROCESS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "1"]

"""How long a job's Python process takes to end after its last line, with and without the heap frozen at exit.

Each variant runs 6 times in a fresh interpreter; the child prints the time when its code is done and this script
takes the time when the process is gone. `saeseeds.common.process_exit` (entered by every job script's `rule_log`
and the CLI) freezes the heap at exit; the control disarms it by replacing `gc.freeze` before `rule_log` registers it.

    python benchmarks/job_exit.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

JOB = "import torch\nfrom saeseeds.common.logs import rule_log\n{disarm}with rule_log('/dev/null'):\n    pass\n"
VARIANTS = {
    "heap frozen at exit (rule_log)": JOB.format(disarm=""),
    "control: not frozen": JOB.format(disarm="import gc; gc.freeze = lambda: None\n"),
}


def main() -> None:
    for name, code in VARIANTS.items():
        ends, totals = [], []
        for _ in range(6):
            start = time.time()
            out = subprocess.run([sys.executable, "-c", code + "import time; print(time.time())"], capture_output=True,
                                 text=True, check=True).stdout
            done = time.time()
            ends.append(done - float(out.split()[-1]))
            totals.append(done - start)
        print(f"{name}: exit {statistics.median(ends):.2f} s, whole process {statistics.median(totals):.2f} s (medians of 6)")


if __name__ == "__main__":
    main()

import subprocess
import sys

import pytest

JOBS = {
    "rule_log": "with rule_log(LOG) as logger:\n    logger.info('done')\n",
    "cli": "try:\n    main(['--help'])\nexcept SystemExit:\n    open(LOG, 'w').write('done')\n",
}


@pytest.mark.parametrize("entry", sorted(JOBS))
def test_a_job_freezes_its_heap_only_at_exit_and_loses_nothing(entry, tmp_path):
    """Job scripts (rule_log) and the CLI freeze the heap when the process exits (skipping the interpreter's final
    collections over torch's objects), not before: the job's own collections run as usual, and its log is whole."""
    log = tmp_path / "job.log"
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))  # registered first, runs last\n"
        "import torch\n"
        "from saeseeds.cli import main\n"
        "from saeseeds.common.logs import rule_log\n"
        f"LOG = {str(log)!r}\n"
        + JOBS[entry]
        + "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "frozen before exit: False" in out.stdout and "frozen at exit: True" in out.stdout
    assert "done" in log.read_text()

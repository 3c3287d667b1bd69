#!/usr/bin/env bash
# Build the docs site (MkDocs + mkdocstrings, mkdocs.yml) with --strict: any warning -- a broken link or
# anchor, a page missing from the nav, a cross-reference mkdocstrings cannot resolve -- fails the build.
# Usage: bash scripts/build_docs.sh [OUTDIR]   (the site goes to OUTDIR/site; default: a fresh temp dir)
# Needs the docs extra: pip install -e ".[docs]" -c constraints.txt. $PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$EPOCHREALTIME
# --strict fails on every warning MkDocs counts; the grep also catches a plugin's WARNING line that
# does not go through MkDocs' counter.
"${PYTHON:-python}" -m mkdocs build --strict --clean --site-dir "$out/site" 2>&1 | tee "$log"
if grep -q "^WARNING" "$log"; then
    echo "build_docs: warnings above; failing" >&2
    exit 1
fi
"${PYTHON:-python}" -c 'import sys; print(f"build_docs: {sys.argv[1]}/site built in {float(sys.argv[3]) - float(sys.argv[2]):.1f}s")' \
    "$out" "$start" "$EPOCHREALTIME"

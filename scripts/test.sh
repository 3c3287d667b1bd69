#!/usr/bin/env bash
# The README's test command: install neurodsl with test extras (pinned versions) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test,bench,examples,interop,docs]" -c constraints.txt
# SpikingJelly, for the interop tests and the benchmark peer: its declared dependencies pull torchvision,
# torchaudio and tensorboard; the modules we use need only loguru.
python -m pip install -q --no-deps spikingjelly==2.0.0 loguru==0.7.3
export TRITON_INTERPRET=1
export NEURODSL_CACHE_DIR="${NEURODSL_CACHE_DIR:-$(mktemp -d)}"
python -m pytest -q "$@"
python scripts/run_doc_snippets.py docs README.md
bash scripts/build_docs.sh

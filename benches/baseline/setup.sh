#!/usr/bin/env bash
# Installs what the PyTorch baseline needs beside the project's libtorch (the torch wheel in
# .libtorch/site): Hugging Face transformers, into the git-ignored .bench/site.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if PYTHONPATH=.libtorch/site:.bench/site python3 -c "import transformers" 2>/dev/null; then
    echo "baseline ready (.bench/site)"; exit 0
fi
python3 -m pip install --quiet --target .bench/site.partial "transformers==4.57.1"
rm -rf .bench/site && mv .bench/site.partial .bench/site
echo "baseline ready (.bench/site)"

#!/usr/bin/env bash
# Installs libtorch 2.11 (PyPI's torch==2.11.0, the version tch 0.24 expects) into .libtorch/,
# which .cargo/config.toml points LIBTORCH at. Does nothing when it is already there.
# The Linux wheel is the CUDA 13.0 build: it pulls the nvidia-* wheels (about 4.6 GB) and the
# same binaries run on CPU-only machines.
set -euo pipefail

version="2.11.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.libtorch/site"
stamp="$dest/.titan-torch-$version"

# CCCL's headers (`nv/target`), which ProcessGroupNCCL.hpp reaches through CUDA's and the torch
# wheel does not pull: titan's NCCL process group is compiled only where they are (3 MB).
cccl_version="13.0.85"
cccl="$root/.libtorch/cccl"
install_cccl() {
  [[ -f "$cccl/.titan-cccl-$cccl_version" ]] && return 0
  rm -rf "$cccl.partial"
  "$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
    --target "$cccl.partial" "nvidia-cuda-cccl==$cccl_version"
  touch "$cccl.partial/.titan-cccl-$cccl_version"
  rm -rf "$cccl"
  mv "$cccl.partial" "$cccl"
}

python="${PYTHON:-python3}"
if [[ -f "$stamp" && -f "$dest/torch/lib/libtorch_cpu.so" ]]; then
  install_cccl
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: titan needs Python 3 with pip to install libtorch $version from PyPI;" >&2
  echo "       install python3 and python3-pip (Debian: apt-get install python3 python3-pip)" >&2
  echo "       or set PYTHON=/path/to/python3, then run this again" >&2
  exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "error: $python has no pip; install it (Debian: apt-get install python3-pip)," >&2
  echo "       then run this again" >&2
  exit 1
fi

echo "installing libtorch $version (torch==$version from PyPI, about 4.6 GB) into $dest ..." >&2
# Install beside the destination and move it into place, so an interrupted install never
# leaves a half-written libtorch that cargo would try to link.
tmp="$root/.libtorch/site.partial"
rm -rf "$tmp"
mkdir -p "$root/.libtorch"
"$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  --target "$tmp" "torch==$version"
touch "$tmp/.titan-torch-$version"
install_cccl
rm -rf "$dest"
mv "$tmp" "$dest"
echo "libtorch $version ready at $dest" >&2

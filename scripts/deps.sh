#!/usr/bin/env bash
# Install the Debian 12 packages moec needs, only those that are missing.
# The CUDA toolkit (NVRTC, cuBLAS, NCCL) is expected in /usr/local/cuda already.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3
  clang libclang-rt-14-dev      # libFuzzer and the sanitizers for the test build
  libyaml-dev                   # spec parser
  libclang-14-dev               # kernel lint and signature extraction
  libopenmpi-dev openmpi-bin    # launch and CPU collectives
  libopenblas-dev               # CPU GEMMs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

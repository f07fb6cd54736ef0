#!/usr/bin/env bash
# Everything dsviewer needs on a fresh Debian/Ubuntu machine (Python 3.10+ with pip).
#   ./setup.sh          system libraries for open3d, CPU torch, dsviewer
#   ./setup.sh --test   the same plus headless Chromium and the test tools
set -euo pipefail
cd "$(dirname "$0")"

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

apt_packages=(libgl1 libegl1 libusb-1.0-0)
(( with_tests )) && apt_packages+=(chromium cloudcompare xvfb xauth)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    echo "setup: installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# torch first and pinned, so that no later requirement pulls the multi-GB CUDA build.
if ! python3 -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch (CPU build)"
    python3 -m pip install -q torch==2.13.0
fi
extra=""
(( with_tests )) && extra="[test]"
echo "setup: installing dsviewer${extra}"
python3 -m pip install -q -e ".${extra}"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "setup: done"

#!/bin/sh
# Install what pippyc needs on Debian 12 (as root, or with sudo available).
# Debian packages for building and running; Python packages only for tests.
set -e
PKGS="build-essential pkg-config libprotobuf-c-dev protobuf-c-compiler libdnnl-dev libucx-dev ucx-utils check libcjson-dev zlib1g-dev iproute2 python3 python3-pip"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ "${PIPPY_NO_PIP:-0}" != 1 ]; then
    python3 -c 'import onnx, onnxruntime, numpy' 2>/dev/null || \
        python3 -m pip install -q onnx onnxruntime numpy 2>/dev/null || \
        python3 -m pip install -q --break-system-packages onnx onnxruntime numpy
fi
echo "dependencies ok"

#!/usr/bin/env bash
# Puts Debian's libfabric-dev headers (1.17, the version of the GPU machine's libfabric.so.1)
# into .deps/libfabric/include, for building the libfabric transport on a machine that has the
# runtime library but no headers. Run it here (it needs apt), then carry .deps to the GPU
# machine; tools/gpu_check.sh picks the headers up.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
(cd "$work" && apt-get download libfabric-dev >/dev/null 2>&1 && dpkg -x libfabric-dev_*.deb x)
mkdir -p .deps/libfabric
rm -rf .deps/libfabric/include
cp -r "$work/x/usr/include" .deps/libfabric/include
rm -rf "$work"
echo "libfabric headers in .deps/libfabric/include ($(grep -m1 'FI_MINOR_VERSION' .deps/libfabric/include/rdma/fabric.h))"

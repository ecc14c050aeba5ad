#!/usr/bin/env bash
# Installs every build and test dependency of kvdepot from Debian packages.
# Idempotent: packages already present are skipped. Needs root or sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git clang clang-format
  libclang-rt-14-dev
  libabsl-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  protobuf-compiler librocksdb-dev libucx-dev ucx-utils libgtest-dev
  libgmock-dev libbenchmark-dev libssl-dev libxxhash-dev libzstd-dev
  liburing-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libyaml-cpp-dev libcpp-httplib-dev openssl python3 python3-venv
  redis-server libhiredis-dev libeigen3-dev etcd-server etcd-client iproute2 libnuma1
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

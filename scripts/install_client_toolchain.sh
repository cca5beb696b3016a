#!/usr/bin/env bash
# Install the Debian packages that build the C++/C/Fortran clients (clients/, CMake) when any is missing.
# Idempotent and quiet when all is present. As root it installs them (apt-get update only if the install
# fails); otherwise it names them and fails, as the client tests would (tests/clients/conftest.py).
set -euo pipefail
PACKAGES=(cmake g++ libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler gfortran pkg-config)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_client_toolchain: no apt-get here; install the equivalents of: ${missing[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_client_toolchain: not root; the client tests need: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install_client_toolchain: installing Debian packages for the C++ clients: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "install_client_toolchain: apt-get could not install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install_client_toolchain: installed ${missing[*]}" >&2

#!/usr/bin/env bash
# One-command setup of a fresh Debian 12 machine with Node and npm: installs the system
# packages, the npm dependencies (which bring Node 24 for every npm script), builds the
# vSphere lab, and runs the demonstration on the built-in lab.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-system-packages.sh
./scripts/install-guestfs-packages.sh
./scripts/install-s3-packages.sh
npm ci --no-audit --no-fund
npm run lab -- --build-only
npm run demo

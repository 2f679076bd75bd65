#!/usr/bin/env bash
# Installs the Debian packages the object-storage tests (`npm run test:s3`) need, if they are
# missing: a one-node Ceph cluster (one monitor, one OSD on memstore) and its S3 gateway,
# started by test/s3/rgw.ts in a temporary directory. Idempotent and quick when everything is
# present. Runs apt-get as root (directly, or via sudo when not root), with `apt-get update`
# first when installing.
# Packages:
#   ceph-mon, ceph-osd      the monitor and the object store daemon (memstore: no block device)
#   radosgw                 the RADOS Gateway (S3 API, beast frontend)
#   ceph-common             ceph, ceph-authtool, monmaptool, radosgw-admin
#   restic                  the S3 peer of bench/ (also installed by install-bench-packages.sh)
set -euo pipefail

packages=(ceph-mon ceph-osd radosgw ceph-common restic)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "s3 packages: all present"
  exit 0
fi
echo "s3 packages: installing ${missing[*]}"
run_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"

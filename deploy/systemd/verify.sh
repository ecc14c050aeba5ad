#!/usr/bin/env bash
# deploy/systemd/verify.sh: offline check of the unit, its drop-in and the
# sysusers.d file, with systemd's own tools (Debian package systemd).
# `systemd-analyze verify` needs the ExecStart binary to exist, so it checks
# a temporary copy whose ExecStart is /bin/true; any message it prints (an
# unknown key, a bad value) fails the check. A copy with a misspelt key must
# be reported, so a verify that accepts everything cannot pass unnoticed.
# Without systemd-analyze it prints "skipped" and exits 0.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v systemd-analyze >/dev/null || ! command -v systemd-sysusers >/dev/null; then
  echo "systemd units: skipped (no systemd-analyze / systemd-sysusers)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# verify UNIT_DIR: prints what systemd-analyze says about kvdepot-node.service.
verify() {
  systemd-analyze verify "$1/kvdepot-node.service" 2>&1 || echo "systemd-analyze verify exited $?"
}

mkdir -p "$tmp/units/kvdepot-node.service.d"
sed 's#^ExecStart=/usr/local/bin/kvdepot-node #ExecStart=/bin/true #' \
  "$here/kvdepot-node.service" >"$tmp/units/kvdepot-node.service"
grep -q '^ExecStart=/bin/true ' "$tmp/units/kvdepot-node.service" ||
  { echo "systemd units: ExecStart is not /usr/local/bin/kvdepot-node" >&2; exit 1; }
cp "$here"/kvdepot-node.service.d/*.conf "$tmp/units/kvdepot-node.service.d/"
out="$(verify "$tmp/units")"
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "systemd units: INVALID" >&2
  exit 1
fi

cp -r "$tmp/units" "$tmp/canary"
sed -i 's/^LimitMEMLOCK=/LimitMEMLOK=/' "$tmp/canary/kvdepot-node.service"
if [ -z "$(verify "$tmp/canary")" ]; then
  echo "systemd units: systemd-analyze verify did not report a misspelt key; cannot trust it" >&2
  exit 1
fi

mkdir -p "$tmp/root/etc" "$tmp/root/usr/lib/sysusers.d"
touch "$tmp/root/etc/passwd" "$tmp/root/etc/group"
cp "$here/kvdepot.sysusers.conf" "$tmp/root/usr/lib/sysusers.d/kvdepot.conf"
if ! out="$(systemd-sysusers --root="$tmp/root" 2>&1)" ||
   ! grep -q '^kvdepot:' "$tmp/root/etc/passwd"; then
  echo "$out" >&2
  echo "systemd units: kvdepot.sysusers.conf does not create the kvdepot user" >&2
  exit 1
fi

echo "systemd units: kvdepot-node.service, $(ls "$here"/kvdepot-node.service.d/*.conf | wc -l) drop-in(s) and kvdepot.sysusers.conf valid ($(systemctl --version | head -1 | cut -d' ' -f1-2))"

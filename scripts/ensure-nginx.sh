#!/usr/bin/env bash
# Makes sure an nginx binary exists for the end-to-end tests (test/e2e/). Installs Debian's nginx
# package when it is missing and we are root; otherwise fails with a message saying what to do.
# The tests run their own nginx (their own config, loopback ports, daemon off), so the system
# service must not start: it would listen on port 80 of every interface.
set -euo pipefail

nginx_bin() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

if [ -n "$(nginx_bin)" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-nginx: nginx is not installed and this is not root; install it (Debian: apt-get install -y nginx)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-nginx: nginx is not installed and apt-get is not available; install nginx with this system's package manager" >&2
  exit 1
fi

# Test files run in parallel and may all find nginx missing: one installs, the others wait for it
# (flock) and then find it; apt itself also waits for a dpkg lock held by anything else.
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/mesh-sds-ensure-nginx.lock
  flock -w 600 9
  if [ -n "$(nginx_bin)" ]; then
    exit 0
  fi
fi

# Keep the package's postinst from starting the service (the Docker images ship the same file).
added_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

echo "ensure-nginx: installing Debian's nginx package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends nginx >&2

if [ -z "$(nginx_bin)" ]; then
  echo "ensure-nginx: apt-get install nginx finished but no nginx binary was found" >&2
  exit 1
fi
echo "ensure-nginx: $("$(nginx_bin)" -v 2>&1)" >&2

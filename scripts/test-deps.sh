#!/usr/bin/env bash
# Installs what dockca's tests need on a Debian machine: a real dockerd
# (Debian's docker.io), the docker CLI, openssl, curl and setpriv (a test
# acts as another user against the service's admin socket), and a static
# busybox (images to run without a registry) and tmux (docker run -it on a
# real terminal) and chromium (the /ui/ page is tested in a real headless
# browser) and etcd (Debian's etcd-server: the replicated store is tested
# on a real 3-member cluster). Fails loudly when it
# cannot: end-to-end tests must run, never silently skip.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v containerd >/dev/null 2>&1 || need+=(docker.io)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/bin/etcd ] || need+=(etcd-server)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# Deduplicate.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing ${need[*]}; run as root to install them (apt-get install ${need[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: missing ${need[*]} and apt-get is not available; install them by hand" >&2
  exit 1
fi
echo "test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for c in dockerd docker containerd openssl curl setpriv tmux busybox chromium etcd; do
  command -v "$c" >/dev/null 2>&1 || { echo "test-deps: $c is still missing after installing ${need[*]}" >&2; exit 1; }
done

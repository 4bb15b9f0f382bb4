#!/usr/bin/env bash
# provision-daemon.sh HOST [SAN...]
#
# Makes a Docker host serve its API over mutual TLS with a dockca daemon
# certificate: runs `dockca daemon setup` (certificate, daemon.json, systemd
# drop-in) and restarts dockerd only when that changed something. Safe to
# run on every provisioning pass: a second run changes nothing and does not
# restart docker.
#
# Environment:
#   ROOT         filesystem root to provision (default /). Any other value
#                writes under that directory and never restarts anything,
#                which is how the tests run this script.
#   LISTEN       space-separated dockerd listeners (default tcp://0.0.0.0:2376)
#   DOCKCA       the dockca binary (default: dockca on PATH)
#   DOCKCA_HOME  passed through to dockca: where its CA lives
#   DRY_RUN=1    show what would change, write nothing
set -euo pipefail

usage() {
	echo "usage: $0 HOST [SAN...]   (env: ROOT LISTEN DOCKCA DOCKCA_HOME DRY_RUN)" >&2
	exit 2
}

[ $# -ge 1 ] || usage
host=$1
shift

ROOT=${ROOT:-/}
LISTEN=${LISTEN:-tcp://0.0.0.0:2376}
DOCKCA=${DOCKCA:-dockca}
DRY_RUN=${DRY_RUN:-0}

# under PATH: PATH inside ROOT.
under() {
	if [ "$ROOT" = / ]; then
		printf '%s\n' "$1"
	else
		printf '%s%s\n' "${ROOT%/}" "$1"
	fi
}

tls_dir=$(under /etc/docker/tls)
config=$(under /etc/docker/daemon.json)
systemd_dir=$(under /etc/systemd/system/docker.service.d)

# --live-restore: dockerd reads its TLS files only at start, so each
# renewal ends in a restart (dockca-renew.service); containers keep running.
args=(daemon setup "$host" --tls-dir "$tls_dir" --config "$config" --systemd-dir "$systemd_dir" --live-restore)
for san in "$@"; do
	args+=(--san "$san")
done
for l in $LISTEN; do
	args+=(--listen "$l")
done
if [ "$DRY_RUN" = 1 ]; then
	args+=(--dry-run)
fi

# Fingerprint of everything setup may write, to decide on the restart
# without parsing dockca's human-readable output.
state() {
	local f
	for f in "$tls_dir/ca.pem" "$tls_dir/server-cert.pem" "$tls_dir/server-key.pem" \
		"$config" "$systemd_dir/dockca.conf"; do
		if [ -e "$f" ]; then
			sha256sum "$f"
			stat -c '%a %n' "$f"
		else
			echo "absent $f"
		fi
	done
}

before=$(state)
"$DOCKCA" "${args[@]}"
after=$(state)

if [ "$DRY_RUN" = 1 ]; then
	exit 0
fi
if [ "$before" = "$after" ]; then
	echo "provision: nothing changed, docker not restarted"
	exit 0
fi

# dockerd reads TLS material and hosts only at start; SIGHUP is not enough.
if [ "$ROOT" = / ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	echo "provision: restarting docker"
	systemctl daemon-reload
	systemctl restart docker
	for _ in $(seq 1 30); do
		if docker version >/dev/null 2>&1; then
			echo "provision: docker is back"
			exit 0
		fi
		sleep 1
	done
	echo "provision: docker did not come back; see journalctl -u docker" >&2
	exit 1
fi
echo "provision: changed; would run: systemctl daemon-reload && systemctl restart docker"

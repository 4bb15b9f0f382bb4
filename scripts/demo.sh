#!/usr/bin/env bash
# demo.sh [start|stop] [DEMO_DIR]
#
# The README's first path, end to end on one machine: the dockca CA
# service (its home in DEMO_DIR/home, initialised on first start without a
# password: a development CA) and a throwaway dockerd on loopback whose
# daemon certificate comes from that service, so that the lines this script
# prints give a working `docker --context dockca-demo ps`. If `make serve`
# already runs the service for DEMO_DIR/home, it is used instead of a new
# one. `stop` ends the dockerd and the service this script started; the CA
# itself stays in DEMO_DIR/home.
#
# Environment:
#   DOCKCA            the dockca binary (default ./dockca)
#   DEMO_CA_LISTEN    where the service listens (default 127.0.0.1:8443)
#   DEMO_DOCKER_PORT  the dockerd's TCP port on 127.0.0.1 (default 2376)
#
# dockerd needs root, so this does too. `make test` runs it and the lines
# it prints (examples/readme_test.go).
set -euo pipefail

action=start
case "${1:-}" in
start | stop)
	action=$1
	shift
	;;
esac
demo_arg=${1:-./demo}
dockca=${DOCKCA:-./dockca}
ca_listen=${DEMO_CA_LISTEN:-127.0.0.1:8443}
docker_port=${DEMO_DOCKER_PORT:-2376}
context=dockca-demo

mkdir -p "$demo_arg"
demo=$(cd "$demo_arg" && pwd)
home=$demo/home
run=$demo/run
stop_hint="make demo-stop"
if [ "$demo_arg" != ./demo ]; then
	stop_hint="make demo-stop DEMO=$demo_arg"
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
	local pidfile=$1 what=$2
	if alive "$pidfile"; then
		kill -TERM "$(cat "$pidfile")"
		for _ in $(seq 1 100); do
			alive "$pidfile" || break
			sleep 0.2
		done
		echo "demo: stopped $what"
	fi
	rm -f "$pidfile"
}

if [ "$action" = stop ]; then
	stop_pid "$run/dockerd.pid" dockerd
	stop_pid "$run/serve.pid" "dockca serve"
	rm -rf "$run/dockerd"
	echo "demo: the CA stays in $home; remove the context with: docker context rm $context"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "demo: dockerd needs root; run this as root (sudo make demo)" >&2
	exit 1
fi
# A fresh Debian machine has no dockerd: install Debian's docker.io, as
# make test does, or say plainly what is missing.
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
	if command -v apt-get >/dev/null; then
		echo "demo: installing docker.io (dockerd and the docker CLI)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
fi
for cmd in dockerd docker; do
	command -v "$cmd" >/dev/null || {
		echo "demo: $cmd is not installed and could not be installed (apt-get install docker.io)" >&2
		exit 1
	}
done
mkdir -p "$run"
chmod 0700 "$run"

print_next() {
	# shellcheck disable=SC1091
	. "$run/demo.env"
	cat <<EOT

A throwaway dockerd on tcp://127.0.0.1:$docker_port trusts only the demo CA at $ca_url.
Get a docker context from the CA (a one-time token, then a key made here and certified by the service):

  export DOCKCA_TOKEN=\$($dockca --home $home token create --kind client --role admin $context)
  $dockca context add $context --host tcp://127.0.0.1:$docker_port --ca-url $ca_url --fingerprint $fingerprint --force
  docker --context $context ps

Stop the demo: $stop_hint
EOT
}

if alive "$run/dockerd.pid"; then
	echo "demo: already running"
	print_next
	exit 0
fi

# 1. The CA service: start one, unless make serve already runs it.
if ! alive "$run/serve.pid"; then
	: >"$run/serve.log"
	nohup "$dockca" --home "$home" serve --no-password --listen "$ca_listen" >"$run/serve.log" 2>&1 &
	echo $! >"$run/serve.pid"
	for _ in $(seq 1 150); do
		grep -q '^Mint a one-time token' "$run/serve.log" && break
		if ! alive "$run/serve.pid"; then
			rm -f "$run/serve.pid"
			if grep -q 'dockca serve is running\|locked by another' "$run/serve.log"; then
				echo "demo: using the dockca serve already running for $home"
				break
			fi
			echo "demo: dockca serve did not start:" >&2
			cat "$run/serve.log" >&2
			exit 1
		fi
		sleep 0.2
	done
fi

# 2. A daemon certificate for this host from the service: a token through
#    the admin socket, the key made here. The token's hints name the
#    service's URL and root fingerprint.
hints=$(mktemp)
trap 'rm -f "$hints"' EXIT
token=$("$dockca" --home "$home" token create --kind daemon --san 127.0.0.1 localhost 2>"$hints") || {
	cat "$hints" >&2
	exit 1
}
ca_url=$(sed -n 's/.*--ca-url \([^ ]*\).*/\1/p' "$hints" | head -1)
fingerprint=$(sed -n 's/^Root fingerprint (SHA-256): \([0-9a-f]*\)$/\1/p' "$hints")
if [ -z "$ca_url" ] || [ -z "$fingerprint" ]; then
	echo "demo: could not read the CA URL and fingerprint from token create:" >&2
	cat "$hints" >&2
	exit 1
fi
printf 'ca_url=%s\nfingerprint=%s\n' "$ca_url" "$fingerprint" >"$run/demo.env"
d=$run/dockerd
rm -rf "$d"
mkdir -p "$d"
"$dockca" enroll --ca-url "$ca_url" --fingerprint "$fingerprint" --token "$token" --cert-dir "$d/tls" >/dev/null

# 3. The throwaway dockerd: loopback only, no iptables or bridge, its own
#    data and exec roots, and only clients of the demo CA on TCP.
echo '{}' >"$d/daemon.json"
nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
	--data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" --config-file "$d/daemon.json" \
	-H "unix://$d/docker.sock" -H "tcp://127.0.0.1:$docker_port" \
	--tlsverify --tlscacert "$d/tls/ca.pem" --tlscert "$d/tls/server-cert.pem" --tlskey "$d/tls/server-key.pem" \
	>"$d/dockerd.log" 2>&1 &
echo $! >"$run/dockerd.pid"
for _ in $(seq 1 150); do
	if DOCKER_HOST="unix://$d/docker.sock" docker version >/dev/null 2>&1; then
		break
	fi
	if ! alive "$run/dockerd.pid"; then
		echo "demo: dockerd did not start:" >&2
		tail -20 "$d/dockerd.log" >&2
		exit 1
	fi
	sleep 0.2
done
print_next

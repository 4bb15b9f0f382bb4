#!/usr/bin/env bash
# dockca's main job on the embedded default: a CA in a local home, a
# daemon certificate for this machine and a client certificate, and how to
# start dockerd and the docker CLI with them. Safe to run again: an
# existing CA and certificates are reused.
set -euo pipefail
demo=${1:-./demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
home="$demo/home"
dockca=${DOCKCA:-./dockca}

if [ ! -f "$home/dockca.db" ]; then
  # A development CA without a password; use a password for real ones.
  "$dockca" --home "$home" init --name quickstart --no-password
fi
[ -f "$demo/daemon/server-cert.pem" ] || "$dockca" --home "$home" issue daemon localhost --san 127.0.0.1 --out "$demo/daemon"
[ -f "$demo/client/cert.pem" ] || "$dockca" --home "$home" issue client "$(id -un)" --out "$demo/client"
"$dockca" --home "$home" ls
cat <<EOT

Start a dockerd that only accepts clients of this CA:
  sudo dockerd --tlsverify --tlscacert=$demo/daemon/ca.pem --tlscert=$demo/daemon/server-cert.pem \\
    --tlskey=$demo/daemon/server-key.pem -H=tcp://127.0.0.1:2376 -H=unix:///var/run/docker.sock
Then talk to it with the client certificate:
  docker --tlsverify -H tcp://127.0.0.1:2376 --tlscacert=$demo/client/ca.pem \\
    --tlscert=$demo/client/cert.pem --tlskey=$demo/client/key.pem version
EOT

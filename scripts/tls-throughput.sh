#!/bin/bash
# The throughput cost of TLS (docs/security.md): 3-member MetaStore and
# 3-member etcd 3.4 (/usr/bin/etcd), each without and with TLS (client
# HTTPS and peer TLS), put and range through the v3 JSON API, 64 clients,
# driven at the leader by metastore-bench; RUNS alternating runs each.
# Prints one line per run: system tls op requests/s p99-ms succeeded requests.
# Usage: scripts/tls-throughput.sh [RUNS] [SECONDS]   (from the checkout)
set -u
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-6}
PY=${PYTHON:-/work/main/.venv/bin/python}
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/tls-throughput.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { "$PY" -c "from metastore.ports import free_port; print(free_port())"; }
cd "$CHECKOUT"
PYTHONPATH=$CHECKOUT "$PY" - "$WORK" <<'PYEOF'
import sys
from metastore.security.selfsigned import CertificateAuthority
ca = CertificateAuthority("tls-throughput CA")
ca.write_ca(sys.argv[1], "ca")
ca.issue("member", ("127.0.0.1", "localhost")).write(sys.argv[1], "member")
PYEOF
CA=$WORK/ca.crt; CERT=$WORK/member.crt; KEY=$WORK/member.key

start_metastore() {  # $1: tls|plain -> URLS: the three client URLs
  local scheme=http flags=() peers=()
  URLS=()
  if [ "$1" = tls ]; then scheme=https; flags=(--cert-file "$CERT" --key-file "$KEY" --peer-cert-file "$CERT"
      --peer-key-file "$KEY" --peer-trusted-ca-file "$CA"); fi
  for i in 1 2 3; do peers+=("$scheme://127.0.0.1:$(port)"); done
  local cluster; cluster=$(IFS=,; echo "${peers[*]}")
  for i in 1 2 3; do
    local p; p=$(port); URLS+=("$scheme://127.0.0.1:$p")
    mkdir -p "$WORK/ms-$1-$i"
    PYTHONPATH=$CHECKOUT "$PY" -c "from twisted.scripts.twistd import run; run()" --nodaemon --pidfile= \
      --logfile="$WORK/ms-$1-$i.log" metastore --id $i --cluster "$cluster" --port "$p" \
      --data-dir "$WORK/ms-$1-$i" "${flags[@]}" >/dev/null 2>&1 &
    PIDS+=($!)
  done
}

start_etcd() {  # $1: tls|plain -> URLS
  local scheme=http flags=() peerurls=()
  URLS=()
  if [ "$1" = tls ]; then scheme=https; flags=(--cert-file "$CERT" --key-file "$KEY" --peer-cert-file "$CERT"
      --peer-key-file "$KEY" --peer-trusted-ca-file "$CA" --peer-client-cert-auth); fi
  for i in 1 2 3; do peerurls+=("$scheme://127.0.0.1:$(port)"); URLS+=("$scheme://127.0.0.1:$(port)"); done
  local cluster="e1=${peerurls[0]},e2=${peerurls[1]},e3=${peerurls[2]}"
  for i in 1 2 3; do
    /usr/bin/etcd --name e$i --data-dir "$WORK/etcd-$1-$i" --listen-client-urls "${URLS[$((i-1))]}" \
      --advertise-client-urls "${URLS[$((i-1))]}" --listen-peer-urls "${peerurls[$((i-1))]}" \
      --initial-advertise-peer-urls "${peerurls[$((i-1))]}" --initial-cluster "$cluster" \
      --initial-cluster-state new "${flags[@]}" >"$WORK/etcd-$1-$i.log" 2>&1 &
    PIDS+=($!)
  done
}

leader_of() {  # the URL among $@ whose member says it leads (v3 maintenance status)
  for _ in $(seq 1 120); do
    for u in "$@"; do
      local doc; doc=$(curl -s --max-time 2 --cacert "$CA" -X POST "$u/v3/maintenance/status" -d '{}')
      if "$PY" -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if str(d.get('leader'))==str(d['header']['member_id']) else 1)" "$doc" 2>/dev/null; then
        echo "$u"; return 0; fi
    done
    sleep 0.5
  done
  return 1
}

bench() {  # system tls op url
  local args=(put); [ "$3" = range ] && args=(range --consistency l)
  PYTHONPATH=$CHECKOUT "$PY" -m metastore.bench "${args[@]}" --api v3 --endpoints "$4" --clients 64 \
    --duration "$SECONDS_PER_RUN" --key-space-size 1000 --cacert "$CA" --json 2>/dev/null |
    "$PY" -c "import json,sys; r=json.load(sys.stdin); print('$1', '$2', '$3', round(r['requests_per_second']), (r.get('latency_ms') or {}).get('p99'), r['succeeded'], r['requests'])" \
    || echo "$1 $2 $3 failed"
}

for system in metastore etcd; do
  for tls in plain tls; do
    before=${#PIDS[@]}
    start_$system $tls
    leader=$(leader_of "${URLS[@]}") || { echo "$system $tls: no leader"; continue; }
    for run in $(seq 1 "$RUNS"); do
      for op in put range; do bench $system $tls $op "$leader"; done
    done
    for p in "${PIDS[@]:$before}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
  done
done

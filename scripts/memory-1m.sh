#!/bin/bash
# 1,000,000 v3 puts over 10,000 keys against one etcd and one MetaStore member, at once; RSS after.
set -u
PY=${PYTHON:-.venv/bin/python}
cd "$(dirname "$0")/.."
D=$(mktemp -d /tmp/mem1m.XXXX)
ep=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
pp=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
mp=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
mpp=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
/usr/bin/etcd --name e --data-dir $D/etcd --listen-client-urls http://127.0.0.1:$ep --advertise-client-urls http://127.0.0.1:$ep \
  --listen-peer-urls http://127.0.0.1:$pp --initial-advertise-peer-urls http://127.0.0.1:$pp --initial-cluster e=http://127.0.0.1:$pp > $D/etcd.log 2>&1 &
EPID=$!
PYTHONPATH=. $PY -c "from twisted.scripts.twistd import run; run()" --nodaemon --pidfile= --logfile=$D/ms.log metastore --id 1 --cluster http://127.0.0.1:$mpp --port $mp --data-dir $D/ms > $D/ms.out 2>&1 &
MPID=$!
sleep 5
echo "idle RSS: etcd $(grep VmRSS /proc/$EPID/status) metastore $(grep VmRSS /proc/$MPID/status)"
PYTHONPATH=. $PY -m metastore.bench put --api v3 --endpoints http://127.0.0.1:$ep -n 1000000 -k 10000 -c 64 --pid $EPID > $D/etcd.bench 2>&1 &
B1=$!
PYTHONPATH=. $PY -m metastore.bench put --api v3 --endpoints http://127.0.0.1:$mp -n 1000000 -k 10000 -c 64 --pid $MPID > $D/ms.bench 2>&1 &
B2=$!
wait $B1 $B2
echo "after 1M puts: etcd $(grep -E 'VmRSS|VmHWM' /proc/$EPID/status | tr '\n' ' ') metastore $(grep -E 'VmRSS|VmHWM' /proc/$MPID/status | tr '\n' ' ')"
curl -s -XPOST http://127.0.0.1:$ep/v3/maintenance/status -d '{}'; echo
curl -s -XPOST http://127.0.0.1:$mp/v3/maintenance/status -d '{}'; echo
grep -E "requests/s|Requests/s|p99|errors" $D/etcd.bench | head -5
grep -E "requests/s|Requests/s|p99|errors" $D/ms.bench | head -5
kill $EPID $MPID; wait
echo "dir $D"

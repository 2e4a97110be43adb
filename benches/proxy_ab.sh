#!/usr/bin/env bash
# Interleaved A/B of one hop at maximum rate: nginx and/or meshtel-proxy builds, each
# forwarding to the same nginx upstream, measured in alternating rounds so that every
# build sees the same minutes of a shared machine (whose speed drifts by 30 % and more).
#
#   benches/proxy_ab.sh ROUNDS SECONDS HOP...     # HOP: a meshtel-proxy binary, or nginx
#   benches/proxy_ab.sh 8 3 nginx old/meshtel-proxy new/meshtel-proxy
#
# The hops and the upstream are pinned to CPU 0, wrk (16 connections) to CPU 1. Each
# proxy serves its inbound listener with telemetry to a closed port and queues of one
# (as "telemetry off" in benches/proxy.sh); COLLECTOR=http://ADDR PROXY_EXTRA=" " sends
# it to a running collector instead. Printed per hop: the median (min, max) over the
# rounds of requests/s and of CPU per request (utime + stime / requests), and the
# medians of its user and system (kernel) parts.
# Needs wrk, nginx, taskset, python3.
set -euo pipefail
NGINX_USER=""
[[ $EUID -eq 0 ]] && NGINX_USER="user root;"
ROUNDS=$1; SECS=$2; shift 2
W=$(mktemp -d /tmp/ab.XXXX)
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(fp); mkdir -p $W/up
sed -e "s|@DIR@|$W/up|g" -e "s|@PORT@|$UP|g" -e "s|@USER@|$NGINX_USER|g" $(dirname "$0")/proxy/upstream.conf.in > $W/up/nginx.conf
taskset -c 0 nginx -p $W/up -c $W/up/nginx.conf -e $W/up/error.log & NG=$!
printf 'services:\n  - name: bench\n    port: 8080\n    endpoints: []\n' > $W/mesh.yaml
sleep 0.5
declare -a ADDR PID PIDS
i=0
for b in "$@"; do
  if [[ $b == nginx ]]; then
    HP=$(fp); mkdir -p $W/hop$i
    sed -e "s|@DIR@|$W/hop$i|g" -e "s|@PORT@|$HP|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@USER@|$NGINX_USER|g" $(dirname "$0")/proxy/hop.conf.in > $W/hop$i/nginx.conf
    taskset -c 0 nginx -p $W/hop$i -c $W/hop$i/nginx.conf -e $W/hop$i/error.log & PID[$i]=$!
    sleep 0.5; ADDR[$i]=127.0.0.1:$HP; PIDS[$i]="${PID[$i]} $(pgrep -P ${PID[$i]} | tr '\n' ' ')"
  else
    RUST_LOG=warn taskset -c 0 $b --mesh $W/mesh.yaml --service bench --version v1 --admin 127.0.0.1:0 --outbound 127.0.0.1:0 --inbound 127.0.0.1:0=127.0.0.1:$UP --collector ${COLLECTOR:-http://127.0.0.1:1} --sampling 1 --listeners-file $W/l$i.json ${PROXY_EXTRA:---report-queue 1 --span-queue 1} > $W/proxy$i.log 2>&1 & PID[$i]=$!
    for k in $(seq 50); do [[ -s $W/l$i.json ]] && break; sleep 0.1; done
    ADDR[$i]=$(python3 -c "import json;print(json.load(open('$W/l$i.json'))['inbound'])"); PIDS[$i]=${PID[$i]}
  fi
  i=$((i+1))
done
# utime and stime, summed over the hop's processes, in clock ticks.
ticks() { local u=0 s=0 p; for p in $1; do read -r pu ps < <(awk '{print $14, $15}' /proc/$p/stat); u=$((u + pu)); s=$((s + ps)); done; echo "$u $s"; }
for r in $(seq $ROUNDS); do
  for j in $(seq 0 $((i-1))); do
    taskset -c 1 wrk -t1 -c16 -d1s http://${ADDR[$j]}/ >/dev/null
    read -r u0 s0 < <(ticks "${PIDS[$j]}")
    taskset -c 1 wrk -t1 -c16 -d${SECS}s http://${ADDR[$j]}/ > $W/wrk.txt
    read -r u1 s1 < <(ticks "${PIDS[$j]}")
    REQ=$(awk '/requests in/ {print $1}' $W/wrk.txt)
    echo "$j $r $(awk '/Requests\/sec/ {print $2}' $W/wrk.txt) $(awk -v u=$((u1-u0)) -v s=$((s1-s0)) -v r=$REQ 'BEGIN{printf "%.1f %.1f %.1f", (u+s)*10000/r, u*10000/r, s*10000/r}')" >> $W/res
  done
done
python3 - "$W/res" "$@" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for j, name in enumerate(sys.argv[2:]):
    rps = [float(r[2]) for r in rows if int(r[0]) == j]
    cpu = [float(r[3]) for r in rows if int(r[0]) == j]
    user = [float(r[4]) for r in rows if int(r[0]) == j]
    system = [float(r[5]) for r in rows if int(r[0]) == j]
    print(f"{name:<40} req/s median {statistics.median(rps):8.0f} (min {min(rps):6.0f} max {max(rps):6.0f})"
          f"  CPU/request median {statistics.median(cpu):5.1f} µs (min {min(cpu):5.1f} max {max(cpu):5.1f})"
          f"  user {statistics.median(user):5.1f} system {statistics.median(system):5.1f} µs")
PY
for j in $(seq 0 $((i-1))); do kill ${PID[$j]} 2>/dev/null || true; done
kill $NG; wait 2>/dev/null; rm -rf $W

# Networking (issue #4): what the default bridge adds to a short run, and many containers on one
# user network (start time, and each sampled container resolving and reaching others by name
# through the engine's DNS). Targets for berth: run --rm on the default bridge <= 25 ms median
# and <= 10 ms over --network none.

BENCH_NET_N=${BENCH_NET_N:-200}

group network
row net_none "run --rm --network none busybox true, median" ms
row net_bridge "run --rm busybox true (default bridge), median" ms
row net_over "  what the bridge adds" ms
row net_start "start ${BENCH_NET_N} containers on one user network" s
row net_fail "  sampled name lookups + pings that failed (of 30)" count
cases case_net_latency case_net_many

case_net_latency() {
  latency net_none run --rm --network none busybox true
  latency net_bridge run --rm busybox true
  result net_over "$(calc "${RESULT[net_bridge,$ENGINE]} - ${RESULT[net_none,$ENGINE]}")"
}

case_net_many() {
  local n=$BENCH_NET_N i j t0 t1 fails=0 step
  # a /24 of its own next to the default bridge's (10.213.x): 254 addresses for n <= 250
  cli network create --subnet "10.214.$(($$ % 250)).0/24" benchnet >/dev/null
  t0=$(now)
  for i in $(seq "$n"); do
    cli run -d --name "net$i" --network benchnet busybox sleep 3600 >/dev/null
  done
  t1=$(now)
  result net_start "$(calc "$t1 - $t0")"
  # 10 containers spread over the set, each pinging 3 others by name
  step=$((n / 10))
  [ "$step" -ge 1 ] || step=1
  for i in $(seq 1 "$step" "$n" | head -10); do
    for j in 1 2 3; do
      local k=$(((i + j * 37) % n + 1))
      cli exec "net$i" ping -c 1 -W 2 "net$k" >/dev/null 2>&1 || fails=$((fails + 1))
    done
  done
  result net_fail "$fails"
  # shellcheck disable=SC2046
  cli rm -f $(cli ps -aq) >/dev/null
  # dockerd may still be releasing the endpoints of containers `rm -f` just removed (3 s was
  # not enough at load 10: its bridge stayed behind)
  for _ in $(seq 30); do
    cli network rm benchnet >/dev/null 2>&1 && return 0
    sleep 1
  done
  cli network rm benchnet >/dev/null
}

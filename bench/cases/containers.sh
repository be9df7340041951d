# Containers (issue #3): latency of short runs, starting many detached containers, memory per
# running container and the idle daemon. Targets for berth: run --network none <= 15 ms median,
# <= 1 MiB per running container, berthd idle RSS <= 15 MB.

group containers
row idle_rss "daemon idle RSS (dockerd+containerd for Docker)" MiB
row run_none "run --rm --network none busybox true, median" ms
row run_default "run --rm busybox true, median" ms
row start_n "start ${BENCH_N} detached sleep containers" s
row shim_pss "  shim PSS per container" MiB
row daemon_growth "  daemon PSS growth per container" MiB
row mem_per "memory per running container (shim + daemon)" MiB
cases case_idle_rss case_run_none case_run_default case_detached

case_idle_rss() {
  # podman has no daemon: no row rather than a misleading 0
  [ "$ENGINE" = podman ] && return 0
  # after start-up and the image import, 4 s without a request (berthd gives pages back after 2)
  sleep 4
  # shellcheck disable=SC2046
  result idle_rss "$(calc "$(rss_kb $(daemon_pids "$ENGINE")) / 1024")"
}

case_run_none() { latency run_none run --rm --network none busybox true; }

case_run_default() { latency run_default run --rm busybox true; }

case_detached() {
  local n=$BENCH_N i t0 t1 before after shims
  # berthd trims its memory after 2 s without a request (ticks of 1 s): measure both sides
  # of the growth in the same (idle) state
  sleep 4
  # shellcheck disable=SC2046
  before=$(pss_kb $(daemon_pids "$ENGINE"))
  t0=$(now)
  for i in $(seq "$n"); do
    cli run -d --name "bench$i" busybox sleep 3600 >/dev/null
  done
  t1=$(now)
  result start_n "$(calc "$t1 - $t0")"
  sleep 4
  # shellcheck disable=SC2046
  shims=$(pss_kb $(shim_pids "$ENGINE"))
  # shellcheck disable=SC2046
  after=$(pss_kb $(daemon_pids "$ENGINE"))
  result shim_pss "$(calc "$shims / $n / 1024" 2)"
  result daemon_growth "$(calc "($after - $before) / $n / 1024" 2)"
  result mem_per "$(calc "($shims + $after - $before) / $n / 1024" 2)"
  # shellcheck disable=SC2046
  cli rm -f $(cli ps -aq) >/dev/null
}

# Sourced by bench/run: engines (private daemons), measuring helpers, the case registry and the
# table. Everything lives under $WORK and is removed by cleanup_all, also on failure or ^C.

BENCH_RUNS=${BENCH_RUNS:-30}
BENCH_N=${BENCH_N:-100}
BENCH_ENGINES=${BENCH_ENGINES:-"berth docker podman"}
REL="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
# A bridge of our own for the engines' default network (Docker's -b needs an existing one), on a
# subnet chosen per run so parallel runs and the tests' subnets do not collide.
BRIDGE="bbench$(($$ % 100000))"
BRIDGE_NET="10.213.$(($$ % 250)).1/24"
export DOCKER_CONFIG="$WORK/docker-config" DOCKER_CLI_HINTS=false
unset DOCKER_HOST DOCKER_CONTEXT BERTH_HOST

declare -A GROUP_CASES=() ROW_LABEL=() ROW_UNIT=() ROW_GROUP=() RESULT=() ENGINE_PIDS=()
GROUPS_ORDER=()
ROWS_ORDER=()
CUR_GROUP=""
ENGINE=""

note() { echo "bench: $*" >&2; }
die() {
  echo "bench: $*" >&2
  exit 1
}

# ---- the case registry (used by cases/*.sh) ----

# group NAME: the rows and cases declared after it belong to group NAME (`bench/run NAME`).
group() {
  CUR_GROUP=$1
  GROUPS_ORDER+=("$1")
  GROUP_CASES[$1]=""
}
# row ID LABEL UNIT: one line of the table, in declaration order. A case fills it with `result`.
row() {
  ROWS_ORDER+=("$1")
  ROW_LABEL[$1]=$2
  ROW_UNIT[$1]=$3
  ROW_GROUP[$1]=$CUR_GROUP
}
# cases FN...: functions run in order for each engine, as `FN ENGINE` (also in $ENGINE).
cases() { GROUP_CASES[$CUR_GROUP]+=" $*"; }
# result ROW VALUE: the current engine's number for ROW.
result() { RESULT[$1,$ENGINE]=$2; }

# ---- engines ----

engine_available() {
  case $1 in
    berth) return 0 ;;
    docker) command -v dockerd >/dev/null && command -v docker >/dev/null ;;
    podman) command -v podman >/dev/null ;;
    *) die "unknown engine $1" ;;
  esac
}

# The engine's CLI as words, pointed at its private daemon/state.
cli_words() {
  case $1 in
    berth) echo "$REL/berth -H unix://$WORK/berth/berth.sock" ;;
    docker) echo "docker -H unix://$WORK/docker/docker.sock" ;;
    podman) echo "podman --root $WORK/podman/root --runroot $WORK/podman/run --tmpdir $WORK/podman/tmp --cgroup-manager cgroupfs --events-backend none" ;;
  esac
}
# cli ARGS...: run the current engine's CLI.
cli() {
  # shellcheck disable=SC2046 # word splitting is the point: paths have no spaces
  $(cli_words "$ENGINE") "$@"
}

wait_for_socket() { # SOCK PID LOG
  local i
  for i in $(seq 300); do
    [ -S "$1" ] && curl -sf --unix-socket "$1" http://x/_ping >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || die "daemon exited early: $(tail -20 "$3")"
    sleep 0.1
  done
  die "daemon did not answer on $1 in 30 s: $(tail -20 "$3")"
}

ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  ip link add "$BRIDGE" type bridge
  ip addr add "$BRIDGE_NET" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

engine_start() {
  ENGINE=$1
  local d=$WORK/$1
  mkdir -p "$d"
  case $1 in
    berth)
      # the run's own bridge, as for dockerd: berth0 may belong to a system berthd
      ensure_bridge
      echo '{}' >"$d/daemon.json"
      "$REL/berthd" --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/berthd.pid" \
        -H "unix://$d/berth.sock" --bridge "$BRIDGE" --bip "$BRIDGE_NET" --config-file "$d/daemon.json" \
        >"$d/berthd.log" 2>&1 &
      ENGINE_PIDS[berth]=$!
      wait_for_socket "$d/berth.sock" "${ENGINE_PIDS[berth]}" "$d/berthd.log"
      ;;
    docker)
      ensure_bridge
      echo '{}' >"$d/daemon.json"
      dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        -H "unix://$d/docker.sock" --containerd-namespace "bench-$$" \
        --containerd-plugins-namespace "bench-$$-plugins" --bridge "$BRIDGE" \
        --iptables=false --ip6tables=false --config-file "$d/daemon.json" \
        >"$d/dockerd.log" 2>&1 &
      ENGINE_PIDS[docker]=$!
      wait_for_socket "$d/docker.sock" "${ENGINE_PIDS[docker]}" "$d/dockerd.log"
      ;;
    podman)
      mkdir -p "$d/tmp"
      # podman reads $DOCKER_CONFIG/config.json and fails when the file is missing; and as root it
      # raises RLIMIT_NOFILE/NPROC above this machine's hard limits unless told otherwise
      mkdir -p "$DOCKER_CONFIG"
      echo '{}' >"$DOCKER_CONFIG/config.json"
      printf '[containers]\ndefault_ulimits = ["nofile=1024:%s", "nproc=4096:4096"]\n' \
        "$(ulimit -Hn)" >"$d/containers.conf"
      export CONTAINERS_CONF="$d/containers.conf"
      # netavark leaves its iptables-nft tables behind: remember which were there before
      nft list tables >"$d/tables.before" 2>/dev/null || true
      ENGINE_PIDS[podman]=""
      ;;
  esac
}

engine_stop() {
  local e=$1 pid=${ENGINE_PIDS[$1]:-}
  ENGINE=$e
  # containers first, so no shim outlives its daemon
  local ids
  ids=$(cli ps -aq 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || cli rm -f $ids >/dev/null 2>&1 || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  ENGINE_PIDS[$e]=""
  if [ "$e" = podman ]; then
    cli system reset -f >/dev/null 2>&1 || true
    local t
    # shellcheck disable=SC2086 # "table ip nat" split into nft's words
    while read -r t; do
      grep -qxF "$t" "$WORK/podman/tables.before" 2>/dev/null || nft delete $t 2>/dev/null || true
    done < <(nft list tables 2>/dev/null | grep -E '^table ip6? (nat|filter)$')
  fi
  # whatever shim is still around belongs to us (matched by our work dir or namespace)
  local p
  for p in $(shim_pids "$e"); do kill -KILL "$p" 2>/dev/null || true; done
}

# The daemon processes whose memory counts as the engine's: berthd; dockerd and its containerd.
daemon_pids() {
  local pid=${ENGINE_PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  echo "$pid"
  [ "$1" = docker ] && pgrep -P "$pid" -x containerd || true
}

# Per-container helper processes: berth-shim; containerd-shim-runc-v2; conmon.
shim_pids() {
  local exe pat p cmd
  case $1 in
    berth) exe=berth-shim pat=$WORK ;;
    docker) exe=containerd-shim-runc-v2 pat="bench-$$" ;;
    podman) exe=conmon pat=$WORK ;;
  esac
  for p in /proc/[0-9]*; do
    [ "$(basename "$(readlink "$p/exe" 2>/dev/null)")" = "$exe" ] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case $cmd in *"$pat"*) echo "${p#/proc/}" ;; esac
  done
}

# ---- measuring ----

# kB of PSS (proportional set size: shared pages split among their users) of the given pids.
pss_kb() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
rss_kb() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# calc EXPR: floating point arithmetic, one decimal.
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
now() { date +%s.%N; }

# latency ROW ARGS...: median wall time (ms) of `CLI ARGS...` over BENCH_RUNS runs (hyperfine,
# no intermediate shell). A failing command fails the case.
latency() {
  local row=$1 json
  shift
  json=$WORK/$ENGINE/$row.json
  hyperfine -N --style basic --warmup 3 --runs "$BENCH_RUNS" --export-json "$json" \
    "$(cli_words "$ENGINE") $*" >&2
  result "$row" "$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$json")"
}

# ---- image and binaries ----

build_release() {
  [ "${BENCH_NO_BUILD:-}" = 1 ] && return 0
  note "building release binaries"
  (cd "$ROOT" && cargo build --release --bins -q) || die "release build failed"
}

# The busybox image every engine gets: Debian's busybox-static, one symlink per applet, as the
# tests build it.
make_busybox_tar() {
  local bb r=$WORK/busybox
  bb=$(command -v busybox) || die "busybox-static is not installed (apt-get install busybox-static)"
  mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,usr/bin,var,home}
  chmod 1777 "$r/tmp"
  cp "$bb" "$r/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  tar -C "$r" --numeric-owner --owner=0 --group=0 -cf "$WORK/busybox.tar" .
}

load_image() {
  ENGINE=$1
  cli import "$WORK/busybox.tar" busybox:latest >/dev/null
}

# ---- output and cleanup ----

print_table() {
  local g r e v b d p ratio
  local -a want=("$@")
  printf '\n%-52s %10s %10s %10s %14s\n' "case" "berth" "docker" "podman" "berth/docker"
  printf '%-52s %10s %10s %10s %14s\n' "----" "-----" "------" "------" "------------"
  for r in "${ROWS_ORDER[@]}"; do
    local in=0
    for g in "${want[@]}"; do [ "${ROW_GROUP[$r]}" = "$g" ] && in=1; done
    [ $in = 1 ] || continue
    b=${RESULT[$r,berth]:--}
    d=${RESULT[$r,docker]:--}
    p=${RESULT[$r,podman]:--}
    ratio=-
    if [ "$b" != - ] && [ "$d" != - ] && awk "BEGIN { exit !($d > 0) }"; then
      ratio="$(calc "$b / $d" 2)x"
    fi
    printf '%-52s %10s %10s %10s %14s\n' "${ROW_LABEL[$r]} (${ROW_UNIT[$r]})" "$b" "$d" "$p" "$ratio"
  done
  echo
  echo "measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

cleanup_all() {
  local e
  for e in "${!ENGINE_PIDS[@]}"; do
    [ -n "${ENGINE_PIDS[$e]}" ] && engine_stop "$e"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # unmount what a killed daemon may have left below $WORK, deepest first
  awk -v w="$WORK" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}

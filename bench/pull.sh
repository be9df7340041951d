#!/bin/sh
# Pull and push of a ~1 GB image (8 layers: 4 of incompressible data, 4 compressible) from/to a
# local docker-registry (distribution 2.8) on 127.0.0.1: berth vs Docker vs skopeo.
#
#   bench/pull.sh [runs]        (default 3; needs release builds: cargo build --release --bins)
#   BERTHD_FLAGS="--max-concurrent-downloads 4" bench/pull.sh    (extra berthd flags)
#
# Everything lives under a scratch dir (own registry storage and port, own berthd and dockerd
# data roots and sockets) and is removed at the end. Prints the best of `runs` per case (wall
# time, and the user+sys CPU time the engine's daemons spent: berthd; dockerd + containerd;
# skopeo itself) and the ratios against Docker and skopeo from the same run, with the load
# average. skopeo only downloads (dir: transport, no unpack): the floor.
set -eu

RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BERTH_BIN_DIR:-$ROOT/target/release}
W=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
IMG=$REG/bench/big:v1
PIDS=""

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
    grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
# user+sys CPU seconds so far of these processes and the children they reaped
cpu() {
    for p in "$@"; do awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null; done |
        awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / hz}'
}
minus() { echo "$1 $2" | awk '{printf "%.2f", $1 - $2}'; }
elapsed() { echo "$(now) $1" | awk '{printf "%.2f", $1 - $2}'; }

start_registry() {
    rm -rf "$W/registry"
    mkdir -p "$W/registry"
    cat > "$W/registry/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry/storage
http:
  addr: $REG
YML
    /usr/bin/docker-registry serve "$W/registry/config.yml" > "$W/registry.log" 2>&1 &
    REG_PID=$!
    PIDS="$PIDS $REG_PID"
    for _ in $(seq 100); do
        curl -sf "http://$REG/v2/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "registry did not start" >&2
    exit 1
}
stop_registry() { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }

# --- the image: a docker-archive built here, pushed once with skopeo (gzip) ---------------
echo "building the test image (8 layers, ~1.08 GB) ..."
python3 - "$W/img" <<'PY'
import hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
MB = 1000 * 1000
layers = []
for i in range(8):
    path = os.path.join(out, f"layer{i}.tar")
    with tarfile.open(path, "w") as t:
        if i % 2 == 0:
            size = 120 * MB
            data = os.urandom(size)  # incompressible
        else:
            size = 150 * MB
            line = (f"layer {i}: compressible log line with some words in it 0123456789\n").encode()
            data = (line * (size // len(line) + 1))[:size]
        ti = tarfile.TarInfo(f"data{i}.bin"); ti.size = len(data); ti.mode = 0o644; ti.mtime = 1700000000
        t.addfile(ti, io.BytesIO(data))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    layers.append(("sha256:" + h.hexdigest(), f"layer{i}.tar"))
config = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(8)],
}).encode()
chex = hashlib.sha256(config).hexdigest()
with open(os.path.join(out, chex + ".json"), "wb") as f:
    f.write(config)
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump([{"Config": chex + ".json", "RepoTags": ["bench/big:v1"], "Layers": [p for _, p in layers]}], f)
PY
(cd "$W/img" && tar cf "$W/img.tar" .)
rm -rf "$W/img"
start_registry
skopeo copy -q --dest-tls-verify=false "docker-archive:$W/img.tar" "docker://$IMG"
rm -f "$W/img.tar"
# keep a pristine copy of the registry storage for the push runs' fresh registries
UNC=$(du -sb "$W/registry/storage" | cut -f1)
echo "registry holds $((UNC / 1000000)) MB (compressed)"

# --- daemons -------------------------------------------------------------------------------
"$BIN/berthd" --data-root "$W/berth/data" --exec-root "$W/berth/exec" --pidfile "$W/berth/pid" \
    -H "unix://$W/berth.sock" --bridge none ${BERTHD_FLAGS:-} > "$W/berthd.log" 2>&1 &
BERTHD_PID=$!
PIDS="$PIDS $BERTHD_PID"
BERTH="$BIN/berth -H unix://$W/berth.sock"
HAVE_DOCKER=0
if command -v dockerd >/dev/null 2>&1; then
    echo '{}' > "$W/daemon.json"
    dockerd --data-root "$W/docker/data" --exec-root "$W/docker/exec" --pidfile "$W/docker/pid" \
        -H "unix://$W/docker.sock" --bridge none --iptables=false --ip6tables=false \
        --containerd-namespace "berth-bench-$$" --config-file "$W/daemon.json" > "$W/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    PIDS="$PIDS $DOCKERD_PID"
    HAVE_DOCKER=1
fi
DOCKER="docker -H unix://$W/docker.sock"
for _ in $(seq 300); do
    $BERTH version >/dev/null 2>&1 && break
    sleep 0.1
done
if [ $HAVE_DOCKER = 1 ]; then
    for _ in $(seq 300); do
        $DOCKER version >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

DOCKER_PIDS=""
if [ $HAVE_DOCKER = 1 ]; then
    DOCKER_PIDS="$DOCKERD_PID $(pgrep -P "$DOCKERD_PID" containerd || true)"
fi

# best wall time of a file of "wall cpu" lines, and the CPU time of that run
# Before each timed pull: the previous engine's dirty pages written back (not to be flushed
# inside the next one's syncs), and the registry's blobs in the page cache for every engine
# alike (the engines are measured, not the disk).
prep() {
    sync
    find "$W/registry/storage" -type f -exec cat {} + > /dev/null
}

best() { sort -n "$1" | head -1 | cut -d' ' -f1; }
best_cpu() { sort -n "$1" | head -1 | cut -d' ' -f2; }

# --- pull --------------------------------------------------------------------------------
: > "$W/t.berth"; : > "$W/t.docker"; : > "$W/t.skopeo"
for r in $(seq "$RUNS"); do
    prep
    c=$(cpu "$BERTHD_PID"); t=$(now); $BERTH pull -q "$IMG" >/dev/null
    echo "$(elapsed "$t") $(minus "$(cpu "$BERTHD_PID")" "$c")" >> "$W/t.berth"
    $BERTH rmi -f "$IMG" >/dev/null
    if [ $HAVE_DOCKER = 1 ]; then
        prep
        c=$(cpu $DOCKER_PIDS); t=$(now); $DOCKER pull -q "$IMG" >/dev/null
        echo "$(elapsed "$t") $(minus "$(cpu $DOCKER_PIDS)" "$c")" >> "$W/t.docker"
        $DOCKER rmi -f "$IMG" >/dev/null
    fi
    rm -rf "$W/skopeo-dir"
    prep
    /usr/bin/time -f "%e %U %S" -o "$W/skopeo.time" \
        skopeo copy -q --src-tls-verify=false "docker://$IMG" "dir:$W/skopeo-dir"
    awk '{printf "%.2f %.2f\n", $1, $2 + $3}' "$W/skopeo.time" >> "$W/t.skopeo"
    rm -rf "$W/skopeo-dir"
    echo "pull run $r (wall cpu): berth $(tail -1 "$W/t.berth"), docker $(tail -1 "$W/t.docker" 2>/dev/null), skopeo $(tail -1 "$W/t.skopeo"); load $(cut -d' ' -f1 /proc/loadavg)"
done
PB=$(best "$W/t.berth"); PS=$(best "$W/t.skopeo"); PD=$(best "$W/t.docker" 2>/dev/null || true)
CB=$(best_cpu "$W/t.berth"); CS=$(best_cpu "$W/t.skopeo"); CD=$(best_cpu "$W/t.docker" 2>/dev/null || true)

# --- push (each run into an empty registry: nothing to skip or mount) ---------------------
$BERTH pull -q "$IMG" >/dev/null
[ $HAVE_DOCKER = 1 ] && $DOCKER pull -q "$IMG" >/dev/null
: > "$W/u.berth"; : > "$W/u.docker"
for r in $(seq "$RUNS"); do
    stop_registry; start_registry
    c=$(cpu "$BERTHD_PID"); t=$(now); $BERTH push -q "$IMG" >/dev/null
    echo "$(elapsed "$t") $(minus "$(cpu "$BERTHD_PID")" "$c")" >> "$W/u.berth"
    if [ $HAVE_DOCKER = 1 ]; then
        stop_registry; start_registry
        c=$(cpu $DOCKER_PIDS); t=$(now); $DOCKER push -q "$IMG" >/dev/null
        echo "$(elapsed "$t") $(minus "$(cpu $DOCKER_PIDS)" "$c")" >> "$W/u.docker"
    fi
    echo "push run $r (wall cpu): berth $(tail -1 "$W/u.berth"), docker $(tail -1 "$W/u.docker" 2>/dev/null); load $(cut -d' ' -f1 /proc/loadavg)"
done
UB=$(best "$W/u.berth"); UD=$(best "$W/u.docker" 2>/dev/null || true)
VB=$(best_cpu "$W/u.berth"); VD=$(best_cpu "$W/u.docker" 2>/dev/null || true)

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
ratio() { [ -n "$2" ] && echo "$2 $1" | awk '{printf "%.2fx", $1 / $2}' || echo "-"; }
printf '%-26s %11s %11s %11s %13s %13s\n' "case (best of $RUNS)" berth docker skopeo "docker/berth" "skopeo/berth"
printf '%-26s %11s %11s %11s %13s %13s\n' "pull 1.08 GB, wall s" "$PB" "${PD:--}" "$PS" "$(ratio "$PB" "$PD")" "$(ratio "$PB" "$PS")"
printf '%-26s %11s %11s %11s %13s %13s\n' "pull, CPU s (user+sys)" "$CB" "${CD:--}" "$CS" "$(ratio "$CB" "$CD")" "$(ratio "$CB" "$CS")"
printf '%-26s %11s %11s %11s %13s %13s\n' "push 1.08 GB, wall s" "$UB" "${UD:--}" "-" "$(ratio "$UB" "$UD")" "-"
printf '%-26s %11s %11s %11s %13s %13s\n' "push, CPU s (user+sys)" "$VB" "${VD:--}" "-" "$(ratio "$VB" "$VD")" "-"

# Builds (issue #7): a 3-stage Dockerfile of 21 instructions (busybox steps that work offline,
# an unused stage that sleeps 3 s, a scratch final stage), cold (--no-cache) and fully cached,
# through the API (`POST /build`, the legacy builder, version=1) with curl so the CLI's start-up
# and context packing are not in the numbers. Targets for berth: cold >= 3x faster than Docker's
# legacy builder (which also runs the unused stage); fully cached rebuild <= 30 ms.
# BuildKit needs the buildx CLI plugin (and a session): no row until it is installed. buildah
# (`buildah bud`, podman's builder) fills the podman column of the build rows, in podman's turn,
# with its own --root/--runroot under the bench's work dir (skipped, with a note, if it fails).

group build
row build_cold "3-stage build, cold (--no-cache), median" ms
row build_cached "3-stage build, fully cached, median" ms
cases case_build

bench_build_context() {
  local c=$WORK/build-ctx
  [ -f "$WORK/build-ctx.tar" ] && return 0
  mkdir -p "$c/src/lib"
  for i in $(seq 1 20); do echo "source file $i" >"$c/src/f$i.txt"; done
  echo 'helper' >"$c/src/lib/helper.sh"
  cat >"$c/Dockerfile" <<'DF'
FROM busybox AS build
ARG VERSION=1.0
ENV SRC=/src
WORKDIR /src
COPY src/ ./
RUN for i in $(seq 1 200); do echo "line $i $VERSION" >> gen.txt; done
RUN tar -cf /out.tar . && gzip -9 /out.tar
RUN sha256sum /out.tar.gz > /out.sha

FROM busybox AS unused
RUN sleep 3 && echo never needed > /never
COPY src/ /never-src/

FROM scratch
LABEL org.example.bench=build
COPY --from=build /out.tar.gz /app/out.tar.gz
COPY --from=build /out.sha /app/out.sha
COPY --from=build /bin/busybox /bin/busybox
ENV PATH=/bin
WORKDIR /app
EXPOSE 8080
USER 65534
ENTRYPOINT ["/bin/busybox"]
CMD ["true"]
DF
  tar -C "$c" -cf "$WORK/build-ctx.tar" .
}

bench_sock() {
  case $ENGINE in
    berth) echo "$WORK/berth/berth.sock" ;;
    docker) echo "$WORK/docker/docker.sock" ;;
  esac
}

case_build() {
  # podman's column is buildah's (podman build is buildah), run in podman's turn so its
  # netavark tables are cleaned up with podman's
  if [ "$ENGINE" = podman ]; then
    bench_buildah || note "buildah: the bench build failed (see $WORK/buildah)"
    return 0
  fi
  bench_build_context
  local sock url json
  sock=$(bench_sock)
  url="http://x/build?version=1&t=bench-build:latest&q=1"
  # one build first: it must succeed (errors are in the stream, curl exits 0 either way)
  if curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/x-tar' \
    --data-binary "@$WORK/build-ctx.tar" "$url" | grep -q errorDetail; then
    note "$ENGINE: the bench build fails"
    return 1
  fi
  json=$WORK/$ENGINE/build_cold.json
  hyperfine -N --style basic --runs "${BENCH_BUILD_RUNS:-3}" --export-json "$json" \
    "curl -s -o /dev/null --unix-socket $sock -X POST -H Content-Type:application/x-tar --data-binary @$WORK/build-ctx.tar $url&nocache=1" >&2
  result build_cold "$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$json")"
  json=$WORK/$ENGINE/build_cached.json
  hyperfine -N --style basic --warmup 3 --runs "$BENCH_RUNS" --export-json "$json" \
    "curl -s -o /dev/null --unix-socket $sock -X POST -H Content-Type:application/x-tar --data-binary @$WORK/build-ctx.tar $url" >&2
  result build_cached "$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$json")"
  cli image prune -af >/dev/null 2>&1 || true
}

# buildah bud of the same context into the podman column (podman build is buildah): its own
# storage (overlay, as root) under $WORK, the same busybox rootfs committed as
# docker.io/library/busybox so the Dockerfile's FROM resolves locally, default isolation and
# network, `--layers` so the cached case can hit (buildah skips the unused stage, as berth).
# buildah 1.28 runs under this machine's hard RLIMIT_NOFILE of 20000 as it is.
bench_buildah() {
  command -v buildah >/dev/null || return 0
  bench_build_context
  local d=$WORK/buildah json ctr
  mkdir -p "$d"
  local bh="buildah --root $d/root --runroot $d/run --storage-driver overlay"
  # shellcheck disable=SC2086 # word splitting is the point: paths have no spaces
  {
    ctr=$($bh from scratch) &&
      $bh add "$ctr" "$WORK/busybox.tar" / >/dev/null &&
      $bh commit -q "$ctr" docker.io/library/busybox:latest >/dev/null &&
      $bh rm "$ctr" >/dev/null
  } >"$d/setup.log" 2>&1 || return 1
  local bud="$bh bud --quiet --layers -t bench-build -f $WORK/build-ctx/Dockerfile $WORK/build-ctx"
  # shellcheck disable=SC2086
  $bud >"$d/first.log" 2>&1 || return 1
  json=$d/build_cold.json
  hyperfine -N --style basic --runs "${BENCH_BUILD_RUNS:-3}" --export-json "$json" \
    "${bud/--layers/--layers --no-cache}" >&2 || return 1
  result build_cold "$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$json")"
  json=$d/build_cached.json
  hyperfine -N --style basic --warmup 3 --runs "$BENCH_RUNS" --export-json "$json" "$bud" >&2 ||
    return 1
  result build_cached "$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$json")"
  # shellcheck disable=SC2086
  $bh rmi -af >/dev/null 2>&1 || true
}

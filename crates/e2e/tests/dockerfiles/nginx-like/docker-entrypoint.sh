#!/bin/sh
set -e
if [ "$1" = "nginx" ]; then
    for f in $(find /docker-entrypoint.d/ -type f -name '*.sh' | sort); do
        echo "$0: running $f"
        "$f"
    done
fi
exec "$@"

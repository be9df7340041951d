#!/bin/sh
echo "entrypoint: $* PGDATA=$PGDATA PATH=$PATH LANG=$LANG"
docker-enforce-initdb.sh

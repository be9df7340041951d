#!/bin/sh
echo "20-envsubst: NGINX_VERSION=$NGINX_VERSION"

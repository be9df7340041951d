#!/bin/sh
echo "serving as $(id -un) from $PWD"

#!/bin/sh
echo "ensure-initdb as $(basename "$0")"

#!/bin/sh
echo "10-listen: ok"

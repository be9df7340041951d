#!/bin/sh
find /etc/app /etc/app2 /single-match.txt /data-one /opt /multi /json /data /spaced /srv /existing /nested-flat /links | sort
cat /links/link-to-hello

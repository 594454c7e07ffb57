#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the built etrnd in the foreground with etc/etrnd.conf: listens on
# 127.0.0.1:2525, spool under ./var/spool, accepts mail for demo.test.
# Ctrl-C (SIGINT) or SIGTERM stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x build/etrnd ]]; then
	echo "run.sh: build/etrnd not built: run 'make run' (or 'make build')" >&2
	exit 1
fi
mkdir -p var/spool
echo "etrnd on 127.0.0.1:2525 (spool var/spool). Try: swaks --server 127.0.0.1:2525 --to user@demo.test --from you@example.org   then: build/etrnd-spool list var/spool"
exec build/etrnd -c etc/etrnd.conf

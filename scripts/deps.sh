#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what etrnd needs to build, run and test on Debian 12, and only what
# is missing. Fast when everything is there: dpkg-query checks, no network.
# Postfix is installed only for its smtp-source/smtp-sink test tools, with
# "No configuration", so it does not become this machine's mail server.
# redis-server is installed for the private instances that make run and the
# tests start on unix sockets; the system-wide one Debian's package starts
# and enables (port 6379) is stopped and disabled when this script installs
# the package (a redis-server that was already here is left alone).
set -euo pipefail

# Debian package for each thing we need.
PKGS=(
	build-essential   # gcc, make
	cmake
	pkg-config
	liburing-dev
	libssl-dev
	openssl           # make run's and the tests' certificates (openssl req), s_client, s_server
	libjemalloc-dev
	libhiredis-dev
	libc-ares-dev     # the resolver (core/resolver.c)
	libsystemd-dev    # sd_notify: Type=notify and the watchdog (admin/sdnotify.c)
	libcriterion-dev
	redis-server
	swaks
	libnet-ssleay-perl     # swaks --tls
	libio-socket-ssl-perl  # swaks --tls
	iproute2          # ss: the hostile tests look at etrnd's sockets
	python3
	python3-aiosmtpd
	python3-dnslib    # DNS packets for tests/integration/dns_server.py
	python3-milter    # pymilter (libmilter) for the milter tests: tests/integration/milter_filter.py
	postfix           # smtp-source, smtp-sink
	mandoc            # mandoc -T lint of etc/man (tests/integration/test_install.sh)
	man-db            # man -l renders the installed pages (the same test)
	prometheus        # promtool check metrics (test_metrics); its server is stopped below
	gcovr             # make coverage (scripts/coverage.sh)
)

installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Debian's postinst starts redis-server.service and enables it at boot: a
# second Redis on 6379 that nothing of ours uses. Stop and disable it, with
# systemd when it runs the machine, else with the sysv scripts (containers).
disable_system_redis() {
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
		$SUDO systemctl disable --now redis-server.service >/dev/null 2>&1 || true
	else
		$SUDO service redis-server stop >/dev/null 2>&1 || true
		$SUDO update-rc.d redis-server disable >/dev/null 2>&1 || true
	fi
	echo "deps.sh: stopped and disabled the system-wide redis-server" \
		"(make run and the tests start their own on a unix socket)"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: this script needs Debian's dpkg-query and apt-get (Debian 12)" >&2
	exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
	installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "deps.sh: all ${#PKGS[@]} packages present"
else
	SUDO=
	if [[ $(id -u) -ne 0 ]]; then
		if command -v sudo >/dev/null 2>&1; then
			SUDO=sudo
		else
			echo "deps.sh: missing ${missing[*]}; run as root to install" >&2
			exit 1
		fi
	fi
	echo "deps.sh: installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	for p in "${missing[@]}"; do
		if [[ $p == postfix ]]; then
			# Before the install, so its postinst writes no main.cf and
			# starts no daemon.
			echo "postfix postfix/main_mailer_type select No configuration" \
				| $SUDO debconf-set-selections
		fi
	done
	$SUDO apt-get update -q
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
	for p in "${missing[@]}"; do
		if ! installed "$p"; then
			echo "deps.sh: $p still not installed" >&2
			exit 1
		fi
		if [[ $p == redis-server ]]; then
			disable_system_redis
		fi
	done
	echo "deps.sh: installed ${missing[*]}"
fi

# Only promtool is wanted from prometheus: where systemd started Debian's
# Prometheus server (port 9090), stop and disable it; it is not ours to run.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]] &&
	systemctl is-enabled --quiet prometheus 2>/dev/null; then
	${SUDO:-} systemctl disable --now prometheus >/dev/null 2>&1 ||
		echo "deps.sh: warning: could not stop Debian's prometheus service" >&2
fi

# The tools the tests call by path.
for f in /usr/sbin/smtp-source /usr/sbin/smtp-sink; do
	[[ -x $f ]] || { echo "deps.sh: $f missing although postfix is installed" >&2; exit 1; }
done

# Nothing of ours should make this machine listen on port 25. Debian's "No
# configuration" postfix does not start; if something listens anyway, say so
# (and leave it alone: it is not ours to stop).
port_listening() {
	# /proc/net/tcp{,6}: local address column ends in :PORT in 4 hex
	# digits (0019 is 25), state 0A is LISTEN.
	awk -v port=":$1" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
if port_listening 0019; then
	echo "deps.sh: warning: something listens on TCP port 25 (a system MTA?);" \
		"etrnd's tests use other ports and do not touch it" >&2
fi
# A redis-server that was here before this script (so left running by it):
# etrnd does not use it; say so, since a second Redis confuses newcomers.
if port_listening 18EB; then
	echo "deps.sh: note: a system-wide redis-server listens on port 6379; etrnd" \
		"does not use it (make run and the tests start their own). To stop it:" \
		"systemctl disable --now redis-server" >&2
fi

# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# A private Postfix instance for the benchmarks (Debian's package): its own
# config, queue and data directories under one directory, smtpd on a
# private 127.0.0.1 port, chroot off, its log in a file; the system's
# Postfix is never touched. Source it (bench/run.sh, bench/relay.sh), then:
#   pf_prepare DIR           a fresh DIR/{etc,queue,data} (PF_DIR); the caller
#                            may put files in DIR/etc before pf_launch
#   pf_launch PORT TEXT      main.cf = the common settings + TEXT (what the
#                            benchmark is about: relayhost, relay_domains...),
#                            master.cf with smtpd on 127.0.0.1:PORT; starts
#                            it and sets PF_PORT, PF_MASTER (the caller adds
#                            PF_MASTER to the PIDs it stops on exit); 1 on failure
#   pf_stop                  postfix stop, bounded wait, SIGKILL fallback
#   pf_queued, pf_deferred   messages in incoming+active+maildrop, deferred
# POSTFIX: the postfix command (default /usr/sbin/postfix).
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
PF_DIR=
PF_PORT=
PF_MASTER=
PF_WAIT_TICKS=100          # 0.1 s each: master.pid, smtpd listening, stop

pf_prepare() {
	PF_DIR=$1
	rm -rf "$PF_DIR"
	mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data"
	chown postfix:postfix "$PF_DIR/data" 2>/dev/null || true
}

pf_launch() {
	PF_PORT=$1
	cat >"$PF_DIR/etc/main.cf" <<EOF
# Private benchmark instance written by bench/pf_lib.sh.
compatibility_level = 3.6
config_directory = $PF_DIR/etc
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
biff = no
smtputf8_enable = no
$2
EOF
	# Debian's services, chroot off (column 5), smtpd on a private port.
	cat >"$PF_DIR/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	if ! "$POSTFIX" -c "$PF_DIR/etc" start >"$PF_DIR/start.log" 2>&1; then
		echo "pf_lib: postfix start failed: $(tail -n 3 "$PF_DIR/start.log")" >&2
		tail -n 5 "$PF_DIR/maillog" >&2 2>/dev/null
		return 1
	fi
	for _ in $(seq 1 "$PF_WAIT_TICKS"); do
		[[ -s $PF_DIR/queue/pid/master.pid ]] && break
		sleep 0.1
	done
	PF_MASTER=$(tr -d ' ' <"$PF_DIR/queue/pid/master.pid" 2>/dev/null || true)
	[[ -n $PF_MASTER ]] || { echo "pf_lib: postfix wrote no master.pid" >&2; return 1; }
	for _ in $(seq 1 "$PF_WAIT_TICKS"); do
		kill -0 "$PF_MASTER" 2>/dev/null || break
		(exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "pf_lib: postfix not listening on 127.0.0.1:$PF_PORT" >&2
	return 1
}

pf_stop() {
	[[ -n $PF_MASTER ]] || return 0
	"$POSTFIX" -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true
	for _ in $(seq 1 "$PF_WAIT_TICKS"); do
		kill -0 "$PF_MASTER" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$PF_MASTER" 2>/dev/null || true
	PF_MASTER=
}

pf_queued() { find "$PF_DIR/queue/incoming" "$PF_DIR/queue/active" "$PF_DIR/queue/maildrop" -type f | wc -l; }
pf_deferred() { find "$PF_DIR/queue/deferred" -type f 2>/dev/null | wc -l; }

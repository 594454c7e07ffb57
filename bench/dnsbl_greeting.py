#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What a DNSBL check at connect costs a client (issue 19 point 3): the time
from connect to the 220 with `dnsbl` off, and with two lists answered by
tests/integration/dns_server.py on loopback (one NXDOMAIN, one listing the
client below the threshold, so every client is served), alternating rounds
in one run so both see the same machine load. Connections are sequential
(the figure is latency, not throughput). Prints one line per mode: median,
90th percentile and mean milliseconds to the greeting over N connections,
and the load average.

  ETRND_BIN=build/etrnd ETRND_SPOOL_TOOL=build/etrnd-spool \\
      /usr/bin/python3 bench/dnsbl_greeting.py [N_PER_ROUND] [ROUNDS]
"""

import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import etrnd_harness as h  # noqa: E402
from dns_server import DnsServer  # noqa: E402

CLIENT = "127.0.0.2"
WAIT_S = 60


def greet_ms(port):
    t0 = time.perf_counter()
    with socket.create_connection((h.HOST, port), timeout=WAIT_S,
                                  source_address=(CLIENT, 0)) as c:
        data = b""
        while b"\r\n" not in data:
            got = c.recv(512)
            if not got:
                raise AssertionError("closed before the greeting: %r" % data)
            data += got
        ms = (time.perf_counter() - t0) * 1000
        if not data.startswith(b"220"):
            raise AssertionError("greeting %r" % data)
        c.sendall(b"QUIT\r\n")
    return ms


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    dns = DnsServer({"2.0.0.127.listed.bench": [("A", "127.0.0.2")]}).start()
    common = dict(threads="2", dns_servers=dns.addr(),
                  dnsbl_skip_loopback="no")
    off = h.Etrnd(**common).start()
    on = h.Etrnd(dnsbl="clean.bench, listed.bench", dnsbl_threshold="2", **common).start()
    res = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            for name, e in (("off", off), ("on", on)):
                res[name] += [greet_ms(e.port) for _ in range(n)]
    finally:
        on.cleanup()
        off.cleanup()
        dns.stop()
    load = os.getloadavg()
    for name in ("off", "on"):
        v = sorted(res[name])
        print("dnsbl %-3s: %d connections, greeting after median %.2f ms, p90 %.2f ms, "
              "mean %.2f ms (load average %.2f %.2f %.2f)"
              % (name, len(v), statistics.median(v), v[int(len(v) * 0.9)],
                 statistics.fmean(v), *load))


if __name__ == "__main__":
    main()

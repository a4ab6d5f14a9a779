# The connect client of the DNAT benches (bench-ports.sh, bench-services.sh),
# run in the "internet" netns: HOST PORT COUNT WARM OUT. Times connect()
# alone (SYN out to SYN-ACK back, through the node's DNAT), in nanoseconds,
# one a line to OUT, after WARM untimed ones. It ends each connection with a
# reset (SO_LINGER 0), so that thousands of TIME_WAIT sockets do not pile up
# in the way of the kernel's search for a free source port, which connect()
# does.
import socket
import struct
import sys
import time

host, port, n, warm, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
linger0 = struct.pack("ii", 1, 0)
ns = []
for i in range(warm + n):
    c = socket.socket()
    c.settimeout(5)
    t0 = time.perf_counter_ns()
    c.connect((host, port))
    t1 = time.perf_counter_ns()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    c.close()
    if i >= warm:
        ns.append(t1 - t0)
with open(out, "w") as f:
    f.write("".join("%d\n" % v for v in ns))

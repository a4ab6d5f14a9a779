# The server of the DNAT benches: READY FIRST [LAST]. Listens on ports FIRST
# to LAST (default FIRST) and never accepts: the kernel completes the
# handshake, which is all connect() waits for; a server that accepts is woken
# by each connection from inside the client's connect() (a cross-CPU wake-up,
# ~10 µs on this VM, or not, as the server happens to sleep or run), which
# made the figures bimodal. Each backlog holds every connection of a run
# (reset by the client, never accepted): at most 4096. Creates READY once
# listening.
import socket
import sys
import time

first = int(sys.argv[2])
last = int(sys.argv[3]) if len(sys.argv) > 3 else first
socks = []
for port in range(first, last + 1):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    socks.append(s)
open(sys.argv[1], "w").close()
while True:
    time.sleep(3600)

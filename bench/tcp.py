"""The bandwidth part of the network model (``network.send``: alpha + n beta, beta = 1 /
bandwidth) against a real TCP stream through a rate limit: in a private network namespace,
loopback gets a token-bucket qdisc (``tc ... tbf rate R``) and one process sends n bytes to
another over 127.0.0.1, which answers with one byte once it has all n.

    .venv/bin/python bench/tcp.py                           # 100mbit 1gbit 10gbit none; ~20 s
    .venv/bin/python bench/tcp.py --mtu 1500 --rates 1gbit  # Ethernet's packet size

Plain TCP sockets, not MPI: MPICH would not run over TCP on a namespace's loopback here
(UCX's tcp transport: "Destination is unreachable"; libfabric's tcp provider hung). The
script re-executes itself under ``unshare -rn`` (root inside the new user namespace, which
``tc`` needs; ``dnewton_core.netns`` maps the user to itself, keeping no capability across
exec). ``none`` is loopback without a qdisc: what the CPU alone reaches.

Prints, per rate: the tbf parameters (burst >= rate / HZ, else the bucket empties between
timer ticks and throttles below the rate; the queue holds 100 ms of the rate, and at
least twice TCP's tcp_limit_output_bytes, so that nothing is dropped), then one row
per message size n (1 KiB to 64 MiB, powers of 4, each transfer at most 3 s): the median
of --repeats timed transfers (after one untimed), the model ``send(n, Network(latency,
rate / 8))`` with the latency taken from the smallest message (its time less n beta), their
ratio and the effective bandwidth n / t. Then beta fitted by least squares on n >= 1 MiB
against the configured rate, and the bytes tbf counted (headers, the acks on the same
loopback) against the payload sent. The model has no bucket: a message of less than the
burst passes (partly) at loopback speed while tokens are left, so rows below the burst
depend on how many transfers before them drained it; the fit is above it.
"""
import argparse
import gzip
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnewton_core import netns  # noqa: E402
from dnewton_core.network import Network, send  # noqa: E402

SIZES = [4 ** k * 1024 for k in range(9)]            # 1 KiB .. 64 MiB
UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}      # tc's bit rates are decimal
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def parse_rate(text):
    """Bits per second of a tc rate such as "100mbit"; None for "none" (no qdisc)."""
    if text == "none":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(kbit|mbit|gbit)", text)
    if not m or float(m[1]) * UNITS[m[2]] < 20e6:
        raise SystemExit(f"tcp.py: expected a rate of at least 20mbit (such as 100mbit, 1gbit) "
                         f"or none, got {text!r}")
    return float(m[1]) * UNITS[m[2]]


def kernel_hz():
    """The kernel's timer frequency from its config (100, the safest guess, if unreadable)."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
                return int(re.search(r"^CONFIG_HZ=(\d+)", f.read(), re.M)[1])
        except (OSError, TypeError):
            continue
    return 100


def tbf(rate, mtu):
    """tc arguments of a token bucket for ``rate`` bit/s: burst one timer tick of bytes, at
    least two of the largest packets (MTU plus loopback's 14-byte link header); the queue
    100 ms of the rate, at least twice what one TCP socket may queue below it."""
    try:
        tsq = int(Path("/proc/sys/net/ipv4/tcp_limit_output_bytes").read_text())
    except (OSError, ValueError):
        tsq = 4 << 20
    burst = max(int(rate / 8 / kernel_hz()), 2 * (mtu + 14))
    limit = burst + max(int(rate / 80), 2 * tsq)
    return ["tbf", "rate", f"{int(rate)}bit", "burst", str(burst), "limit", str(limit)]


def tc(*args, check=True):
    done = subprocess.run([shutil.which("tc", path=PATH), *args], capture_output=True, text=True)
    if check and done.returncode:
        raise SystemExit(f"tcp.py: tc {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def fit(n, t):
    """Least squares t = alpha + n beta; (alpha, beta)."""
    (alpha, beta), *_ = np.linalg.lstsq(np.c_[np.ones(len(n)), n], np.asarray(t), rcond=None)
    return alpha, beta


def fill(conn, view, start, stop):
    """Receive into view[start:stop]; False if the sender closed the connection."""
    while start < stop:
        got = conn.recv_into(view[start:stop])
        if not got:
            return False
        start += got
    return True


def receive(listener, view):
    """The receiving process: read an 8-byte length n, the rest of the n bytes, ack; n = 0 ends."""
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while fill(conn, view, 0, 8) and (n := int.from_bytes(view[:8], "little")):
        if not fill(conn, view, 8, n):
            return
        conn.sendall(b"k")


def transfer(conn, view, n, repeats):
    """Median seconds from the first byte sent to the ack of all n bytes (one untimed first)."""
    view[:8] = n.to_bytes(8, "little")
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        conn.sendall(view[:n])
        conn.recv(1)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def counted(payload):
    """tbf's count of the bytes and packets it passed against the payload sent."""
    show = tc("-s", "qdisc", "show", "dev", "lo")
    sent, packets, dropped = map(int, re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+)",
                                                show).groups())
    return (f"tbf counted {sent / payload - 1:+.2%} bytes over the payload, {packets} packets "
            f"({sent / packets:.0f} B each), {dropped} dropped")


def rows(text, rate, sizes, t):
    """One row per size; the model's latency is the smallest message's time less n beta."""
    net = rate and Network(text, max(t[0] - sizes[0] * 8 / rate, 0.0), rate / 8)
    for n, s in zip(sizes, t):
        model = f"{send(n, net):>10.6f} {s / send(n, net):>6.3f}" if rate else f"{'-':>10} {'-':>6}"
        print(f"{text:>7} {n:>9} {s:>10.6f} {model} {n / s / 1e6:>9.1f}")


def case(conn, view, text, repeats, mtu):
    """Time every size under one rate; print the rows, the fit and tbf's count of bytes."""
    rate = parse_rate(text)
    tc("qdisc", "del", "dev", "lo", "root", check=False)
    if rate:
        tc("qdisc", "add", "dev", "lo", "root", *tbf(rate, mtu))
    qdisc = " ".join(tbf(rate, mtu)) if rate else "no qdisc"
    print(f"\n{text}: {qdisc} (HZ {kernel_hz()}, MTU {mtu})")
    sizes = [n for n in SIZES if not rate or n * 8 / rate <= 3]
    counts = [repeats if n >= 2 ** 20 else 4 * repeats for n in sizes]
    t = [transfer(conn, view, n, k) for n, k in zip(sizes, counts)]
    rows(text, rate, sizes, t)
    alpha, beta = fit(*zip(*[(n, s) for n, s in zip(sizes, t) if n >= 2 ** 20]))
    print(f"fit n >= 1 MiB: alpha {alpha * 1e6:.0f} us, 1/beta {1 / beta / 1e6:.1f} MB/s", end="")
    if rate:
        print(f" vs {rate / 8e6:.1f} configured: {(beta * rate / 8 - 1) * 100:+.1f}% per byte\n"
              + counted(sum(n * (k + 1) for n, k in zip(sizes, counts))), end="")
    print(flush=True)


def inside(args):
    subprocess.run([shutil.which("ip", path=PATH), "link", "set", "lo", "up", "mtu",
                    str(args.mtu)], check=True)
    view = memoryview(bytearray(SIZES[-1]))
    listener = socket.create_server(("127.0.0.1", 0))
    if os.fork() == 0:
        conn = socket.create_connection(listener.getsockname())
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print(f"{'rate':>7} {'n bytes':>9} {'measured s':>10} {'model s':>10} {'ratio':>6} "
              f"{'MB/s':>9}")
        for text in args.rates.split(","):
            case(conn, view, text, args.repeats, args.mtu)
        conn.sendall(bytes(8))
        os._exit(0)
    receive(listener, view)
    return os.waitstatus_to_exitcode(os.wait()[1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="100mbit,1gbit,10gbit,none")
    p.add_argument("--repeats", type=int, default=5, help="timed transfers per size >= 1 MiB "
                   "(4 times as many below)")
    p.add_argument("--mtu", type=int, default=65536, help="loopback's MTU (its own: 65536; "
                   "Ethernet: 1500)")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    for text in args.rates.split(","):
        parse_rate(text)
    if args.inside:
        sys.exit(inside(args))
    missing = [tool for tool in ("tc", "ip", "unshare") if not shutil.which(tool, path=PATH)]
    if missing:
        raise SystemExit(f"tcp.py: needs {', '.join(missing)} (iproute2, util-linux)")
    if not netns.available():
        raise SystemExit("tcp.py: this system refuses a private network namespace")
    sys.exit(subprocess.run(["unshare", "-rn", sys.executable, __file__, "--inside",
                             *sys.argv[1:]]).returncode)


if __name__ == "__main__":
    main()

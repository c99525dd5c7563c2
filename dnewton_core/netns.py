"""A private network for a local launch (Linux): a network namespace whose one interface is
loopback, so that nothing a run opens, hydra's control port included, is reachable from
another machine. Standard library only; ``environment.py`` says why the kit needs it.

``enter()`` moves the calling process into a new user and network namespace (its uid and gid
mapped to themselves, so files and signals behave as before) and brings loopback up.
``forward(ports)`` also keeps a relay in the namespace it came from: a process that accepts
on ``127.0.0.1:port`` inside the new namespace and connects to the same port outside. The
notebooks' engines use it to reach ipyparallel's controller, which stays on the kernel's
loopback (ipyparallel's ``ipc`` transport never registered an engine when tried).
"""
import asyncio
import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys

_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PR_SET_PDEATHSIG = 1


def _unshare():
    """This (single-threaded) process into a new user and network namespace, its uid and gid
    mapped to themselves, loopback up. Raises OSError where the system refuses."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


def available():
    """Whether this system gives a process a private network: a forked child tries, so that
    a system which allows the namespace but not the rest (no capability inside it, as under
    some AppArmor profiles) leaves the caller as it was."""
    if not sys.platform.startswith("linux"):
        return False
    child = os.fork()
    if child == 0:
        status = 1
        try:
            _unshare()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def enter():
    """Move this process (single-threaded: call it before it starts mpiexec) into a private
    network; True if it now is in one, False (nothing changed) where the system does not allow it."""
    if not available():
        return False
    _unshare()
    return True


def forward(ports):
    """:func:`enter`, keeping a relay for ``ports``: a child process left in the namespace
    this one came from forwards every connection to ``127.0.0.1:port`` inside the private
    network to the same port outside. The relay ends when this process ends (or what it
    ``execve``-s into). False (nothing changed) where private networks are refused."""
    if not available():
        return False
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    launcher = os.getpid()        # before the fork: the launcher may have ended (its mpiexec
    relay = os.fork()             # failing at once) before the child runs
    if relay == 0:                                       # stays outside: the relay
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)    # it ends with its launcher
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            ours.close()
            _relay(theirs, launcher, ports)
        finally:
            os._exit(0)
    theirs.close()
    _unshare()
    listeners = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        listeners.append(sock)
    socket.send_fds(ours, [b"listeners"], [s.fileno() for s in listeners])
    for sock in (*listeners, ours):
        sock.close()
    return True


def ends_with(parent):
    """Make this process (a child of ``parent``) get SIGTERM when its parent ends (Linux's
    parent-death signal); False if the parent has ended already, before it was set."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    return os.getppid() == parent


def _relay(channel, parent, ports):
    """Receive the private network's listening sockets; forward each to its port here."""
    if not ends_with(parent):                          # the launcher ended before
        return
    _, fds, _, _ = socket.recv_fds(channel, 64, len(ports))
    channel.close()
    asyncio.run(_serve([socket.socket(fileno=fd) for fd in fds], ports, parent))


async def _serve(listeners, ports, parent):
    for sock, port in zip(listeners, ports):
        await asyncio.start_server(lambda r, w, port=port: _pipe_both(r, w, port), sock=sock)
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


async def _pipe_both(reader, writer, port):
    try:
        out_reader, out_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, out_writer), _pipe(out_reader, writer))


async def _pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def in_private_network(pid):
    """True if process ``pid`` is in another network namespace than this one and loopback is
    that namespace's only interface (Linux; False where it cannot be told)."""
    try:
        ours, theirs = os.readlink("/proc/self/ns/net"), os.readlink(f"/proc/{pid}/ns/net")
        with open(f"/proc/{pid}/net/dev") as f:
            devices = [line.split(":", 1)[0].strip() for line in f if ":" in line]
    except OSError:
        return False
    return ours != theirs and devices == ["lo"]

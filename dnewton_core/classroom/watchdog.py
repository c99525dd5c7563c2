"""The watchdog of an ``MPICluster``: a small process that ends the cluster if the kernel
dies without stopping it (exit handlers do not run then), at any moment, ``start()``
included.
"""
import os
import subprocess
import sys

# The watchdog's code. It ends a cluster if the kernel dies without stopping it (atexit
# handlers do not run then). It starts before the controller, so it finds the cluster's
# processes by their environment marker, not by pid: once the kernel is gone, it ends every
# process carrying the marker, again until none is left (one may still be starting), then
# removes the cluster's files that stop() would have removed (ipyparallel's cluster file,
# which otherwise lists a dead cluster). While the kernel lives, it waits; stop() ends it
# after the cluster.
_WATCHDOG = r"""
import os, sys, time
import psutil
key, value, files = sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    kernel = psutil.Process(int(sys.argv[1]))
except psutil.Error:
    kernel = None

def alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

def marked():
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(key) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found

while kernel is not None and alive(kernel):
    time.sleep(0.5)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    procs = marked()
    if not procs:
        time.sleep(0.5)
        if not marked():
            break
        continue
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, rest = psutil.wait_procs(procs, timeout=3)
    for proc in rest:
        try:
            proc.kill()
        except psutil.Error:
            pass
for path in files:
    try:
        os.remove(path)
    except OSError:
        pass
"""


def start_watchdog(key, value, files=()):
    """Start the watchdog of the processes whose environment has ``key=value``, for this
    process (the kernel), which also removes ``files`` (paths) after them; it carries no
    marker itself and outlives a kill of the kernel's process group. ``terminate()`` the
    returned Popen once the cluster is stopped."""
    env = {k: v for k, v in os.environ.items() if k != key}
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), key, value,
                             *map(str, files)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)

"""Output files: checked before a run, written atomically.

``check_writable`` runs before the first iteration (on rank 0, inside the agreed
validation of ``experiment.prepare``): a bad place to write ends the run at once with one
line naming the path, instead of after the whole training. ``write_atomic`` and
``atomic_path`` write into a temporary file in the same directory and then rename it over
the target, so a reader (or a run killed mid-write, or a full disk) sees the old file or
the new one, never half of one. ``JsonSaver`` rewrites a result during a run and leaves
it saying how the run ended. Standard library only.
"""
import contextlib
import json
import math
import os
import tempfile
import threading


def check_writable(paths, overwrite=False, inputs=()):
    """Raise ValueError (a ``model.ConfigError`` is one) naming the first path of ``paths``
    that cannot be written: an existing file without ``overwrite``, a directory, a parent
    that cannot be created or written, a path given for two outputs, or one of the files
    read (``inputs``), even with ``overwrite``. Creates nothing: the probe file is removed."""
    read, written = {os.path.realpath(p) for p in inputs if p}, set()
    for path in paths:
        if not path:
            continue
        where = os.path.realpath(path)
        if where in read or where in written:
            raise ValueError(f"cannot write {path}: it is " + (
                "a file this run reads" if where in read else "given for two outputs"))
        written.add(where)
        if os.path.isdir(path):
            raise ValueError(f"cannot write {path}: it is a directory")
        if os.path.lexists(path) and not overwrite:
            raise ValueError(f"{path} exists; pass --overwrite to replace it"
                             + (" (or reproduce --continue to add to its study)"
                                if os.path.basename(path) == "runs.csv" else ""))
        _probe(path, _existing_ancestor(path))


def remove_outputs(directory, names):
    """Remove the files ``names`` of ``directory`` that exist, and say so: what --overwrite
    replaces goes before the first run, so that a run stopped early leaves no file of the
    old one beside its own (rank 0)."""
    gone = [name for name in names if os.path.isfile(os.path.join(directory, name))]
    for name in gone:
        os.remove(os.path.join(directory, name))
    if gone:
        print(f"removed {', '.join(gone)} from {directory} (--overwrite)", flush=True)


def _existing_ancestor(path):
    """The nearest existing ancestor directory of ``path``'s parent, or a ValueError."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: {parent} is not a directory")
    return parent


def _probe(path, directory):
    """Create and remove a file in ``directory`` (which may be an ancestor of the parent)."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-check-")
    except OSError as e:
        raise ValueError(f"cannot write {path}: {directory} is not writable "
                         f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


# Held while a file is being written: whoever ends the process on purpose (comm.Guard) takes
# it first, so that no temporary file is left behind.
WRITING = threading.RLock()
# What the files rewritten during a run say when it ends before their last write: callables
# of the status ("interrupted", "stalled"), registered while the run is on (``JsonSaver``).
LAST_WORDS = []


def last_words(status):
    """Let every file rewritten during the run say ``status``, for a thread that ends the
    process: it takes ``WRITING`` for good, so that no later write says otherwise. Never
    raises: a file that cannot be written keeps its last state."""
    if WRITING.acquire(timeout=10.0):          # not if a write hangs (a lost file server)
        for write in list(LAST_WORDS):
            try:
                write(status)
            except Exception:
                pass


class JsonSaver:
    """Rewrites one JSON file (a result) atomically at each call (rank 0); the first write
    refuses a file that appeared since the check unless --overwrite. As a context, a run
    that ends before its last write (or its first: the result ``start`` kept) leaves its
    last result with "status" "interrupted" (Ctrl-C; ``comm.Guard`` also "stalled") or
    "failed" (an exception here), not "running".
    With ``runs`` (compare.json), the file holds the finished runs of that dict beside this
    one, under the key ``name``."""

    def __init__(self, path, overwrite, runs=None):
        self.path, self.replace, self.last = path, overwrite, None
        self.runs, self.name = runs, None

    def __call__(self, obj, start=False):
        """Write ``obj``; at a run's ``start``, only keep it for ``ending``."""
        self.last = obj
        if not start:
            write_json(self.path, obj if self.runs is None else {**self.runs, self.name: obj},
                       self.replace)
            self.replace = True

    def ending(self, status):
        if self.last is not None and self.last["final"]["status"] == "running":
            self({**self.last, "final": {**self.last["final"], "status": status}})

    def __enter__(self):
        LAST_WORDS.append(self.ending)
        return self

    def __exit__(self, kind, *_):
        LAST_WORDS.remove(self.ending)
        if kind is not None:                          # the run raised on this rank
            with contextlib.suppress(Exception):      # (perhaps in writing this file)
                self.ending("interrupted" if kind is KeyboardInterrupt else "failed")


def write_json(path, obj, replace=True):
    write_atomic(path, json.dumps(obj, indent=1), replace)


def write_atomic(path, data, replace=True):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file in the same
    directory (created if missing), then rename it over ``path``. With ``replace=False`` an
    existing ``path`` (one that appeared since it was checked) is a FileExistsError and is
    left alone."""
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    with atomic_path(path, replace) as tmp, open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path, replace=True):
    """Yield a temporary path in ``path``'s directory with the same suffix (so writers such
    as matplotlib's ``savefig`` infer the format); when the block ends without an error,
    rename it to ``path`` (see ``write_atomic`` for ``replace``). On an error the
    temporary file is removed and ``path`` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    with WRITING:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.",
                                   suffix=os.path.splitext(name)[1] or ".tmp")
        os.close(fd)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
            yield tmp
            _rename(tmp, path, replace)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _rename(tmp, path, replace):
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)                    # atomic, and fails if path exists
    except FileExistsError:
        raise FileExistsError(f"{path} appeared during the run; pass --overwrite to "
                              "replace it") from None
    except OSError:                           # a file system without hard links
        if os.path.lexists(path):
            raise FileExistsError(f"{path} appeared during the run; pass --overwrite to "
                                  "replace it") from None
        os.replace(tmp, path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finite(obj):
    """The same structure with inf and NaN as None, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item"):                       # numpy scalars
        return finite(obj.item())
    return obj

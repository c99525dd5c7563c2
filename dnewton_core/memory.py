"""The memory a rank needs for its share, in closed form, and the memory it has (docs/method.md §3).

No MPI here. ``need`` counts the arrays a rank holds at the peak of a Newton iteration,
from the partition alone (the interpreter and its libraries are not counted:
``available_bytes`` measures what they leave). For partition (m, i, j) with r = |T_{m-1,i}|
rows and c = |T_{m,j}| columns of W^m, p = r c (+ c on the bias holder) parameters, l
training and l_t test instances, b the evaluation batch, s = |S|, n_L outputs, E bytes per
number (the model's dtype: 8 for float64, 4 for float32) and 8 per int64 class code:

    data        E (l + l_t) r       the feature columns (m = 1)
              + 8 (l + l_t)         the class codes (m = L; one-hot columns are made
                                    batch by batch, ``model.OneHot``)
    parameters  E p VECTORS         theta (model and solver), g, CG's x, r, p, A p and its
                                    terms, the line search's trial point, a block-sized GEMM
    jacobian    E s (r + n_L c + n_L)   z^{m-1} and D on S, p for softmax (the solver frees
                                    them before its line search and the next ones); on
                                    layer L - 1, E s (r + n_L) + E n_L c + s c Z: D^{L-1}
                                    kept as W^{L T} and sigma' on S (``factors.LastHiddenD``);
                                    on layer L, E s (r + n_L): D^L is a selection (``OutputD``)
    work        E max(b', s) (3 r + 5 c) + J   one batch's forward and backward buffers
                                    (b' = min(b, max(l, l_t)), the largest batch), and the
                                    Jacobian's message: J = E s' n_L (r + c [m = L - 1]) for
                                    1 < m < L, its backward product on a chunk of s' = min(s,
                                    b // n_L) instances (``model.jacobian_chunks``), from
                                    D^{L-1} made on the chunk; J = E n_L r on layer L > 1,
                                    W^L's rows; J = 0 on layer 1
              + b' (PIPELINE - 1) (E r + c Z)   the other batches of a pipelined gradient
                                    pass's wave: z^{m-1}, and sigma'(s^m) or on layer L z^L,
                                    d xi / d z^L and p (model.PIPELINE)
    kept        l (E r [m > 1] + c K)   the forward pass the line search keeps (``kept.py``)
                                    for all l instances: z^{m-1}, and sigma'(s^m) or z^L
                                    (with d xi / d z^L and p only for cross-entropy on a
                                    split output layer: else computed again from z^L)

where Z = 3 E on layer L and, on the others, the bytes of an entry of sigma'(s^m): 1 for
relu (a bool mask), E otherwise; K = Z but on layer L, E (3 E for cross-entropy when
P_L > 1); a kept relu mask takes ceil(c / 8) bytes a row, not c (``kept.Bits``).

The one-process model (``dense.DenseModel``) holds every layer and the whole data set:
the same terms summed over the layers, its data X (l + l_t) n_0, the codes, DENSE_VECTORS
parameter-sized vectors (its flatten/unflatten copies), and the forward pass the line search
keeps, E l (n_1 + ... + n_L) (SGD keeps none, and is counted as if it did, on every rank).
"""
import ctypes
import os
import platform

from .model import PIPELINE, ConfigError, element_bytes, jacobian_chunk
from .partition import Grid
from .reference import slope_dtype

CODE = 8               # bytes of a class code (int64)
VECTORS = 12           # parameter-sized vectors alive at once (see the docstring)
DENSE_VECTORS = 15     # the same on one process, with the whole theta's flat copies


KEEP_FREED = 1 << 30   # bytes: allocations below stay in the heap, and so much free memory at its top


def keep_freed_memory():
    """Make glibc's allocator keep the memory numpy frees, for the next array to reuse
    (docs/performance.md). By default a large array is mapped fresh and unmapped when freed,
    so every Jacobian's D, every batch's products, write first into pages the kernel must
    find and zero: 14% of a one-process Newton run's processor time, measured. Sets
    M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to ``KEEP_FREED``; the peak resident memory did
    not grow in the runs measured (the arrays are reused, not added). True if set; False
    where the C library is not glibc (nothing to do). Idempotent; called by every model."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_FREED) and mallopt(M_TRIM_THRESHOLD, KEEP_FREED))


def _sum(parts):
    return dict(parts, total=sum(parts.values()))


def partition_bytes(layers, part, n_train, n_test, batch_size, subsample_size,
                    dtype="float64", pipeline=PIPELINE, keep=True, activation="relu",
                    loss="squared", chunked=True):
    """{"data", "parameters", "jacobian", "work", "kept", "total"}: bytes a rank holding
    partition ``part`` (a ``partition.Partition``) needs, closed form (module docstring),
    for a model computing in ``dtype`` with ``pipeline`` batches in flight, keeping the
    line search's forward pass when ``keep`` (``ObjectiveConfig.keep_forward``);
    ``chunked`` False: the Jacobian's backward products on all of S at once (one process)."""
    r, c, n_L, E = len(part.rows), len(part.cols), layers[-1], element_bytes(dtype)
    Z = 3 * E if part.holds_labels else slope_dtype(activation, dtype).itemsize
    split = loss == "cross_entropy" and c < n_L               # d xi / d z^L, p kept too
    K = E * (1 + 2 * split) if part.holds_labels else Z
    s, rows = subsample_size, n_train + n_test
    m, L = part.m, len(layers) - 1
    chunk = min(s, jacobian_chunk(batch_size, n_L)) if chunked else s
    # D and the Jacobian's message: D W^T on a chunk of S (none on layer 1), or W^L's rows
    if m == L:                              # D^L: a selection; W^L's rows sent (L > 1)
        d_bytes, message = 0, n_L * r * (L > 1)
    elif m == L - 1:                        # D^{L-1}: W^{L T} and sigma' on S, made on a chunk
        d_bytes, message = E * n_L * c + s * c * Z, chunk * n_L * (r + c) * (m > 1)
    else:                                   # D stored
        d_bytes, message = E * s * n_L * c, chunk * n_L * r * (m > 1)
    largest = min(batch_size, max(n_train, n_test))
    batch = max(largest, s)
    data = rows * ((E * r if part.holds_features else 0) +
                   (CODE if part.holds_labels else 0))
    return _sum({
        "data": data,
        "parameters": E * part.n_params * VECTORS,
        "jacobian": E * s * (r + n_L) + d_bytes,
        "work": E * (batch * (3 * r + 5 * c) + message) + largest * (pipeline - 1) * (E * r + c * Z),
        "kept": n_train * (E * r * (part.m > 1) + (-(-c // 8) if K == 1 else c * K)) * keep,
    })


def rank_bytes(layers, parts, n_train, n_test, batch_size, subsample_size, dtype="float64",
               **options):
    """The same for a rank holding the partitions ``parts``: their sum, the data counted
    once over the feature columns their layer-1 blocks span (and the class codes once): a
    bound, since their blocks share inputs and D (``passes.py``)."""
    sizes = (n_train, n_test, batch_size, subsample_size)
    each = [partition_bytes(layers, p, *sizes, dtype, **options) for p in parts]
    out = {key: sum(e[key] for e in each) for key in each[0] if key not in ("data", "total")}
    E, rows = element_bytes(dtype), n_train + n_test
    spans = [p.rows for p in parts if p.holds_features]
    width = max(r.stop for r in spans) - min(r.start for r in spans) if spans else 0
    return _sum(dict(data=rows * (E * width + CODE * any(p.holds_labels for p in parts)), **out))


def dense_bytes(layers, n_train, n_test, batch_size, subsample_size, dtype="float64", keep=True):
    """The same for the one-process model: every layer, the whole data set."""
    parts = Grid(tuple(layers), (1,) * len(layers)).partitions
    each = [partition_bytes(layers, p, n_train, n_test, batch_size, subsample_size, dtype, 1,
                            chunked=False) for p in parts]
    n, E = sum(p.n_params for p in parts), element_bytes(dtype)
    rows = n_train + n_test
    return _sum({
        "data": E * rows * layers[0] + CODE * rows,
        "parameters": E * n * DENSE_VECTORS,
        "jacobian": sum(e["jacobian"] for e in each),
        "work": sum(e["work"] for e in each),
        "kept": E * n_train * sum(layers[1:]) * keep,
    })


def local_ranks(environ=None):
    """Ranks of this job on this machine, as the launcher tells them (MPICH's hydra:
    MPI_LOCALNRANKS; Open MPI: OMPI_COMM_WORLD_LOCAL_SIZE); 1 when none does."""
    environ = os.environ if environ is None else environ
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        if environ.get(name, "").isdigit() and int(environ[name]) > 0:
            return int(environ[name])
    return 1


def _status_bytes(path, key):
    """A "Key:  N kB" line of a /proc file, in bytes (None if absent)."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == key:
                    return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_bytes(n_local=1, meminfo="/proc/meminfo", status="/proc/self/status"):
    """(bytes this process may still allocate, what bounds them) or (None, "unknown"): the
    smaller of the address space its soft RLIMIT_AS leaves (the limit less VmSize, the
    address space in use) and MemAvailable shared among the ``n_local`` ranks here."""
    bounds = []
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        soft = None
    used = _status_bytes(status, "VmSize")
    if soft is not None and soft != resource.RLIM_INFINITY and used is not None:
        bounds.append((soft - used, f"address-space limit {mib(soft)} (ulimit -v, prlimit "
                                    f"--as) less {mib(used)} in use"))
    free = _status_bytes(meminfo, "MemAvailable")
    if free is not None:
        bounds.append((free // max(1, n_local), f"MemAvailable {mib(free)} / {n_local} "
                                                 f"local rank{'s' if n_local > 1 else ''}"))
    return min(bounds) if bounds else (None, "unknown")


def within(make, what):
    """``make()``, or if it runs out of memory a ConfigError naming ``what`` and what this
    process may still allocate: the net under the checks in closed form, one line agreed on
    every rank (``comm.agree_on``) where a MemoryError would end ranks one by one."""
    try:
        return make()
    except MemoryError as e:
        have, why = available_bytes(local_ranks())
        more = f" (this process may allocate {mib(max(have, 0))} more: {why})" if have is not None else ""
        raise ConfigError(f"not enough memory {what}: {str(e) or 'an allocation failed'}{more}"
                          ) from None


def mib(n):
    return f"{n / 2 ** 20:,.0f} MiB"


def evaluate_bytes(layers, n_train, n_test, batch_size, dtype="float64"):
    """{"data", "parameters", "work", "total"}: bytes ``experiment.evaluate`` needs on one
    process: the data set made dense with its class codes, a few copies of the weights, and
    one batch's forward pass (z, s and a temporary on every layer)."""
    E, rows = element_bytes(dtype), n_train + n_test
    n = sum((a + 1) * b for a, b in zip(layers, layers[1:]))
    return _sum({"data": E * rows * layers[0] + CODE * rows, "parameters": 3 * E * n,
                 "work": 3 * E * min(batch_size, max(n_train, n_test)) * sum(layers)})


def check_evaluate(layers, n_train, n_test, batch_size, dtype="float64"):
    """ConfigError, ``refusal``'s line, unless ``evaluate_bytes`` fits this process."""
    line = refusal(evaluate_bytes(layers, n_train, n_test, batch_size, dtype),
                   *available_bytes(local_ranks()), "evaluate", "use a machine with more memory")
    if line:
        raise ConfigError(line)


def refusal(need, have, why, who="this rank's share", fix=None):
    """The one line that refuses ``who`` needing ``need`` (``partition_bytes``) bytes with
    ``have`` available (bounded by ``why``), or None when it fits. Its advice: more ranks
    (and --no-keep-forward where that is enough), or ``fix``; under an address-space limit,
    with ``fix`` given, to raise it."""
    if have is None or need["total"] <= have:
        return None
    parts = ", ".join(f"{k} {mib(v)}" for k, v in need.items() if k != "total")
    less = (f", --no-keep-forward (it would then need {need['total'] - need['kept']:,})"
            if need.get("kept") and need["total"] - need["kept"] <= have else "")
    if fix is None:
        fix = f"use more ranks{less}, or a smaller network or data set"
    elif why.startswith("address-space"):
        fix = "raise the limit"
    return (f"not enough memory: {who} needs {need['total']:,} bytes "
            f"({mib(need['total'])}: {parts}) and has {max(have, 0):,} bytes "
            f"({mib(max(have, 0))}: {why}); {fix}")

"""Matrix-free conjugate gradient, the inner solver of the Newton method (docs/method.md §2, step 3).

No MPI here: the one global operation, the inner product, is passed in as ``dot``. With a
``dot`` that sums over all ranks, the ranks run one CG on the whole system; with a local
``dot`` each rank runs its own CG on its own block (the block-diagonal approximation).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CGResult:
    x: np.ndarray          # the (possibly partial) solution
    residual: np.ndarray   # r = b - A x, kept for the d^T G d identity of the Newton ratio
    iterations: int        # matrix-vector products done
    status: str            # "converged", "max_iter" or "stopped" (told to stop by `stop`)
    block_iterations: tuple = ()   # several CGs at once (newton.direction): each one's count


def cg(matvec, b, dot, rtol, max_iter, stop=None, scale=None):
    """Solve A x = b for symmetric positive definite A, from x = 0: ``b`` (n,), ``matvec(p)``
    (n,) -> (n,), and x (n,) in the ``CGResult``.

    Stops when ||r|| <= rtol ||b|| (norms from ``dot``; with ``scale``, ||r|| <= rtol scale
    instead: a partition measured against the whole gradient, docs/method.md §6), after
    ``max_iter`` products, or when
    ``stop(converged)`` returns True: it is asked once per iteration with this CG's own
    verdict, so a caller can end every partition's CG once enough of them are done. Runs
    out of iterations quietly: the partial solution comes back with status "max_iter".
    (Hestenes and Stiefel 1952; Nocedal and Wright, Algorithm 5.2.)
    """
    if max_iter < 0 or rtol < 0 or (scale is not None and not scale >= 0):
        raise ValueError(f"cg needs max_iter >= 0, rtol >= 0 and scale >= 0, got {max_iter}, "
                         f"{rtol} and {scale}")
    stop = stop or (lambda converged: converged)
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = dot(r, r)
    tol = rtol * (np.sqrt(rr) if scale is None else scale)
    for k in range(max_iter + 1):
        converged = np.sqrt(rr) <= tol
        if stop(converged or k == max_iter):
            status = "converged" if converged else "max_iter" if k == max_iter else "stopped"
            return CGResult(x, r, k, status)
        Ap = matvec(p)
        alpha = rr / dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr, rr_old = dot(r, r), rr
        p *= rr / rr_old
        p += r

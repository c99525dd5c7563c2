"""Model partitions: who holds which block of W^m, which bias, which data (docs/method.md §3).

Pure bookkeeping (Python + numpy, no MPI), so that it can be tested and shown without
``mpiexec``. The paper's layer index m = 1..L is kept; every other index is 0-based:
the paper's partition (m, 1, j), which holds the bias, is ``i == 0`` here.

For layer sizes ``layers = (n_0, ..., n_L)`` and splits ``splits = (P_0, ..., P_L)``:

* layer m's neurons 0..n_m-1 are cut into P_m contiguous, near-equal groups T_{m,0..P_m-1}
  (:func:`neuron_groups`);
* partition (m, i, j) holds ``W^m[T_{m-1,i}, T_{m,j}]``; partition (m, 0, j) also holds
  ``b^m[T_{m,j}]``; partitions (1, i, j) hold the feature columns ``X[:, T_{0,i}]`` and
  partitions (L, i, j) hold the label columns ``Y[:, T_{L,j}]``;
* there are N = sum_m P_{m-1} P_m partitions, numbered q = 0..N-1 layer by layer, then
  by i, then by j (:class:`Grid`); on R <= N MPI ranks, partition q is held by rank q mod R:
  one partition a rank when R = N, and on R ranks a grid whose every layer has R partitions
  gives each rank one block of every layer (docs/method.md §3).

Choosing the splits for a number of ranks, and reading them from text, is ``splits.py``.

Example (the README's)::

    >>> g = Grid((64, 32, 32, 10), (1, 2, 2, 1))
    >>> g.size
    8
    >>> print(g.partition(6))
    rank 6: W^3[0:16, 0:10] + b^3[0:10], holds Y[:, 0:10]
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .reference import n_params

__all__ = ["neuron_groups", "Partition", "Grid"]

_BYTES_PER_VALUE = 8  # float64


def neuron_groups(n, P):
    """T_{m,0..P-1}: ``P`` contiguous, near-equal ranges covering 0..n-1.

    The first ``n % P`` groups get one extra neuron, e.g. ``neuron_groups(10, 3)`` is
    ``[range(0, 4), range(4, 7), range(7, 10)]``.
    """
    n, P = _as_int(n, "n"), _as_int(P, "P")
    if n < 1:
        raise ValueError(f"a layer needs at least 1 neuron, got n = {n}")
    if not 1 <= P <= n:
        raise ValueError(f"cannot split {n} neurons into {P} non-empty groups (need 1 <= P <= {n})")
    base, extra = divmod(n, P)
    groups, start = [], 0
    for k in range(P):
        stop = start + base + (1 if k < extra else 0)
        groups.append(range(start, stop))
        start = stop
    return groups


def _as_int(value, name):
    """value as a plain int; ValueError for anything that is not an integer (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _span(r):
    """'a:b' for range(a, b)."""
    return f"{r.start}:{r.stop}"


@dataclass(frozen=True)
class Partition:
    """One partition (m, i, j) of the model, and the rank that holds it."""

    m: int
    i: int
    j: int
    rank: int     # the MPI rank holding it: index mod the grid's ranks
    rows: range   # T_{m-1,i}: rows of W^m held (= input feature columns held, when m == 1)
    cols: range   # T_{m,j}: columns of W^m held (= label columns held, when m == L)
    has_bias: bool        # i == 0: holds b^m[T_{m,j}]
    holds_features: bool  # m == 1: holds X[:, rows]
    holds_labels: bool    # m == L: holds Y[:, cols]
    index: int            # q: its number in the grid, layer by layer, then i, then j
    alone: bool           # its rank holds no other partition

    @property
    def block_shape(self):
        """Shape of the W^m block held: (|T_{m-1,i}|, |T_{m,j}|)."""
        return (len(self.rows), len(self.cols))

    @property
    def n_params(self):
        """Number of parameters held: the W block plus, on the bias holder, |T_{m,j}| biases."""
        return len(self.rows) * len(self.cols) + (len(self.cols) if self.has_bias else 0)

    @property
    def weights(self):
        """'W^m[a:b, c:d]'."""
        return f"W^{self.m}[{_span(self.rows)}, {_span(self.cols)}]"

    @property
    def bias(self):
        """'b^m[c:d]' on the bias holder, '' elsewhere."""
        return f"b^{self.m}[{_span(self.cols)}]" if self.has_bias else ""

    @property
    def data(self):
        """The data columns held: 'X[:, a:b]', 'Y[:, c:d]', both, or ''."""
        held = []
        if self.holds_features:
            held.append(f"X[:, {_span(self.rows)}]")
        if self.holds_labels:
            held.append(f"Y[:, {_span(self.cols)}]")
        return " and ".join(held)

    def __str__(self):
        text = f"rank {self.rank}: {self.weights}" if self.alone else \
            f"partition {self.index} on rank {self.rank}: {self.weights}"
        if self.has_bias:
            text += f" + {self.bias}"
        if self.holds_features or self.holds_labels:
            text += f", holds {self.data}"
        return text


@dataclass(frozen=True)
class Grid:
    """The partition grid of a network with layer sizes n_0..n_L split P_0..P_L ways, held
    by ``ranks`` MPI ranks (None: one a partition, ``size``)."""

    layers: tuple
    splits: tuple
    ranks: int = None

    def __post_init__(self):
        layers, splits = self.layers, self.splits
        for name, value in (("layers", layers), ("splits", splits)):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
        layers = tuple(_as_int(n, f"layers[{m}]") for m, n in enumerate(layers))
        splits = tuple(_as_int(P, f"splits[{m}] (P_{m})") for m, P in enumerate(splits))
        if len(layers) < 2:
            raise ValueError(f"layers needs at least 2 entries (n_0 inputs and n_L outputs), got {layers}")
        if len(splits) != len(layers):
            raise ValueError(f"splits has {len(splits)} entries but layers has {len(layers)}: "
                             f"a network with L = {len(layers) - 1} layers needs L+1 = {len(layers)} "
                             f"splits P_0..P_{len(layers) - 1}")
        for m, n in enumerate(layers):
            if n < 1:
                raise ValueError(f"layer {m} has {n} neurons; every layer needs at least 1")
        for m, (n, P) in enumerate(zip(layers, splits)):
            if P < 1:
                raise ValueError(f"split P_{m} = {P} must be at least 1")
            if P > n:
                raise ValueError(f"split P_{m} = {P} is larger than layer {m}'s {n} neurons")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "splits", splits)
        ranks = self.size if self.ranks is None else _as_int(self.ranks, "ranks")
        if not 1 <= ranks <= self.size:
            raise ValueError(f"splits {_comma(splits)} have {self.size} partitions: they can be "
                             f"held by 1 to {self.size} MPI ranks, not {ranks}")
        object.__setattr__(self, "ranks", ranks)

    # ------------------------------------------------------------------ sizes
    @property
    def L(self):
        """Number of weight layers."""
        return len(self.layers) - 1

    @property
    def size(self):
        """N = sum_m P_{m-1} P_m: the number of partitions."""
        return sum(self.splits[m - 1] * self.splits[m] for m in range(1, self.L + 1))

    @property
    def n_params(self):
        """n = sum_m (n_{m-1} + 1) n_m: the number of parameters of the whole network."""
        return n_params(self.layers)

    def groups(self, m):
        """T_{m,0..P_m-1} for m = 0..L."""
        self._check_layer(m, lowest=0)
        return neuron_groups(self.layers[m], self.splits[m])

    # ------------------------------------------------------------- partitions
    @cached_property
    def _first_index(self):
        """_first_index[m] = the number q of partition (m, 0, 0); index 0 unused."""
        first, r = [0, 0], 0
        for m in range(1, self.L + 1):
            r += self.splits[m - 1] * self.splits[m]
            first.append(r)
        return tuple(first)

    @cached_property
    def partitions(self):
        """All partitions in rank order: layer by layer, then i, then j."""
        parts = []
        for m in range(1, self.L + 1):
            rows_groups, col_groups = self.groups(m - 1), self.groups(m)
            for i, rows in enumerate(rows_groups):
                for j, cols in enumerate(col_groups):
                    q = len(parts)
                    parts.append(Partition(m=m, i=i, j=j, rank=q % self.ranks, rows=rows,
                                           cols=cols, has_bias=i == 0, holds_features=m == 1,
                                           holds_labels=m == self.L, index=q,
                                           alone=self.ranks == self.size))
        return tuple(parts)

    def rank_of(self, m, i, j):
        """The rank holding partition (m, i, j)."""
        return self.index_of(m, i, j) % self.ranks

    def index_of(self, m, i, j):
        """The number q of partition (m, i, j)."""
        self._check_layer(m)
        if not 0 <= i < self.splits[m - 1]:
            raise ValueError(f"row index i = {i} out of range for layer {m}: 0 <= i < P_{m - 1} = "
                             f"{self.splits[m - 1]}")
        if not 0 <= j < self.splits[m]:
            raise ValueError(f"column index j = {j} out of range for layer {m}: 0 <= j < P_{m} = "
                             f"{self.splits[m]}")
        return self._first_index[m] + i * self.splits[m] + j

    def partition(self, index):
        """Partition number ``index`` (held by rank ``index`` when every rank holds one)."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or \
                not 0 <= index < self.size:
            raise ValueError(f"partition {index!r} out of range: this grid has partitions "
                             f"0..{self.size - 1}")
        return self.partitions[int(index)]

    def blocks(self, rank):
        """The partitions ``rank`` holds, in partition order."""
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or \
                not 0 <= rank < self.ranks:
            raise ValueError(f"rank {rank!r} out of range: this grid has ranks 0..{self.ranks - 1}")
        return self.partitions[int(rank)::self.ranks]

    def held(self):
        """How many partitions each rank holds, in words: "3 a rank", "3, 2, 2 on ranks 0-2"."""
        counts = [len(self.blocks(r)) for r in range(self.ranks)]
        return f"{counts[0]} a rank" if len(set(counts)) == 1 else \
            f"{', '.join(map(str, counts))} on ranks 0-{self.ranks - 1}"

    # ------------------------------------------------------------------ groups
    # (each a tuple of distinct ranks, in increasing order)
    def column_group(self, m, j):
        """Ranks of (m, i, j) over all i: their partial products sum to s^m on T_{m,j}."""
        self._check_layer(m)
        return _distinct(self.rank_of(m, i, j) for i in range(self.splits[m - 1]))

    def row_group(self, m, i):
        """Ranks of (m, i, j) over all j: they all consume z^{m-1} on T_{m-1,i}."""
        self._check_layer(m)
        return _distinct(self.rank_of(m, i, j) for j in range(self.splits[m]))

    def link_group(self, m, j):
        """column_group(m, j) + row_group(m+1, j) (m < L); column_group(L, j) for m == L.

        One sub-communicator per link group carries the forward sum of s^m[T_{m,j}] and
        the backward sum of W delta into z^m[T_{m,j}] (the row group (m+1, j) consumes
        z^m on T_{m,j}, since T_{m,j} is also the row range of those next-layer blocks).
        """
        column = self.column_group(m, j)
        return column if m == self.L else _distinct(column + self.row_group(m + 1, j))

    @property
    def output_group(self):
        """All ranks of layer L."""
        return _distinct(p.rank for p in self.partitions[self._first_index[self.L]:])

    def data_held(self, rank):
        """(feature columns, labels?) that ``rank`` holds: the range spanning the rows
        T_{0,i} of its layer-1 blocks (None if it has none), and whether it has a layer-L
        block."""
        blocks = self.blocks(rank)
        rows = [p.rows for p in blocks if p.holds_features]
        span = range(min(r.start for r in rows), max(r.stop for r in rows)) if rows else None
        return span, any(p.holds_labels for p in blocks)

    @property
    def feature_holders(self):
        """{i: ranks holding X[:, T_{0,i}]}, i.e. the partitions (1, i, j) for all j."""
        return {i: self.row_group(1, i) for i in range(self.splits[0])}

    @property
    def label_holders(self):
        """{j: ranks holding Y[:, T_{L,j}]}, i.e. the partitions (L, i, j) for all i."""
        return {j: self.column_group(self.L, j) for j in range(self.splits[self.L])}

    # ------------------------------------------------------- flat parameters
    @cached_property
    def _layer_offsets(self):
        """Offset of W^m in the flat vector of reference.flatten; index 0 unused."""
        offsets, k = [0], 0
        for m in range(1, self.L + 1):
            offsets.append(k)
            k += (self.layers[m - 1] + 1) * self.layers[m]
        return tuple(offsets)

    def param_slices(self, rank):
        """Positions of the parameters ``rank`` holds in ``reference.flatten``'s vector: its
        blocks' ``block_slices``, in partition order. So ``theta[grid.param_slices(r)]`` is
        rank r's local parameter vector, and ``theta[grid.param_slices(r)] = local``
        scatters it back."""
        return np.concatenate([self.block_slices(p.index) for p in self.blocks(rank)])

    def block_slices(self, index):
        """Positions of partition ``index``'s parameters in ``reference.flatten``'s vector.

        The flat vector is W^1 (row-major), b^1, W^2, b^2, ...; the result is a 1-D int64
        array: the W block row-major, then (on the bias holder) its bias entries.
        """
        p = self.partition(index)
        n_out = self.layers[p.m]
        offset = self._layer_offsets[p.m]
        rows = np.arange(p.rows.start, p.rows.stop, dtype=np.int64)
        cols = np.arange(p.cols.start, p.cols.stop, dtype=np.int64)
        weights = (offset + rows[:, None] * n_out + cols[None, :]).ravel()
        if not p.has_bias:
            return weights
        bias = offset + self.layers[p.m - 1] * n_out + cols
        return np.concatenate([weights, bias])

    # ----------------------------------------------------------------- display
    def describe(self, n_instances=None):
        """A small table of the grid: rank, (m, i, j), block, bias, data held, bytes held.

        "param bytes" counts the float64 parameters held. With ``n_instances`` (l), a
        "data bytes" column adds the float64 feature columns and the int64 class codes held
        for l instances (the label columns are made from the codes batch by batch).
        """
        header = ["rank", "(m, i, j)", "W block", "shape", "bias", "data held", "param bytes"]
        if n_instances is not None:
            header.append("data bytes")
        rows = []
        for p in self.partitions:
            row = [str(p.rank), f"({p.m}, {p.i}, {p.j})", p.weights,
                   f"{p.block_shape[0]}x{p.block_shape[1]}", p.bias or "-", p.data or "-",
                   str(p.n_params * _BYTES_PER_VALUE)]
            if n_instances is not None:
                width = (len(p.rows) if p.holds_features else 0) + p.holds_labels   # X, codes
                row.append(str(n_instances * width * _BYTES_PER_VALUE))
            rows.append(row)
        widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header))]

        def line(cells):
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        held = f"on {_count(self.ranks, 'MPI rank')}" if self.ranks < self.size else \
            "one MPI rank each" if self.size > 1 else "one MPI rank"
        title = (f"layers {_dash(self.layers)}, splits {_comma(self.splits)}: "
                 f"{_count(self.size, 'partition')} ({held}), {self.n_params} parameters")
        return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
                         + ([] if self.ranks == self.size else self._rank_totals(n_instances)))

    def _rank_totals(self, n_instances):
        """One line a rank holding several partitions: which, and the bytes it holds (its
        feature span and class codes once)."""
        lines = []
        for r in range(self.ranks):
            parts, (span, labels) = self.blocks(r), self.data_held(r)
            data = ([f"X[:, {_span(span)}]"] if span else []) + (["the class codes"] if labels else [])
            text = (f"rank {r} holds partitions {', '.join(str(p.index) for p in parts)}"
                    + "".join(f", {d}" for d in data)
                    + f": {sum(p.n_params for p in parts) * _BYTES_PER_VALUE} param bytes")
            if n_instances is not None:
                width = (len(span) if span else 0) + labels                 # X once, codes once
                text += f", {n_instances * width * _BYTES_PER_VALUE} data bytes"
            lines.append(text)
        return lines

    def _check_layer(self, m, lowest=1):
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not lowest <= m <= self.L:
            raise ValueError(f"layer index m = {m!r} out of range: expected {lowest} <= m <= L = {self.L}")


def _distinct(ranks):
    return tuple(sorted(set(ranks)))


def _count(n, noun):
    return f"{n} {noun}{'s' * (n != 1)}"


def _comma(values):
    return ",".join(str(v) for v in values)


def _dash(values):
    return "-".join(str(v) for v in values)

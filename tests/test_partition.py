"""Tests of dnewton_core.partition and .splits (docs/method.md §3): groups, ranks, parameter
ownership, validation."""
import itertools

import numpy as np
import pytest

from dnewton_core import reference
from dnewton_core.costs import link_op
from dnewton_core.partition import Grid, Partition, neuron_groups
from dnewton_core.splits import all_splits, check_rank_count, parse_splits, propose_splits

# (layers, splits): even, uneven, split input, split output layer, deep, single layer
GRIDS = [
    ((64, 32, 32, 10), (1, 2, 2, 1)),
    ((7, 5, 3), (2, 3, 2)),
    ((10, 9, 8, 7, 6), (3, 2, 4, 1, 3)),
    ((13, 11, 4), (4, 3, 4)),
    ((5, 3), (5, 3)),
    ((6, 6, 6, 6, 6, 6, 6), (2, 3, 1, 4, 2, 1, 2)),
]


def grid_ids(grids):
    return ["-".join(map(str, l)) + "/" + ",".join(map(str, s)) for l, s in grids]


# ------------------------------------------------------------------------- neuron_groups

@pytest.mark.parametrize("n", range(1, 25))
def test_neuron_groups_cover_exactly_and_are_near_equal(n):
    for P in range(1, n + 1):
        groups = neuron_groups(n, P)
        assert len(groups) == P
        assert [k for g in groups for k in g] == list(range(n))         # contiguous, in order, no gaps
        sizes = [len(g) for g in groups]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)                     # the first n % P get the extra one
        assert sizes.count(n // P + 1) == (n % P)


def test_neuron_groups_example():
    assert neuron_groups(10, 3) == [range(0, 4), range(4, 7), range(7, 10)]
    assert neuron_groups(32, 2) == [range(0, 16), range(16, 32)]


@pytest.mark.parametrize("n, P", [(3, 4), (3, 0), (0, 1), (4, 1.5)])
def test_neuron_groups_rejects_bad_arguments(n, P):
    with pytest.raises(ValueError):
        neuron_groups(n, P)


# -------------------------------------------------------------------------- worked example

def test_worked_example_64_32_32_10_splits_1_2_2_1():
    g = Grid((64, 32, 32, 10), (1, 2, 2, 1))
    assert g.size == 8 and g.L == 3
    expected = [  # (m, i, j, rows, cols, bias, features, labels)
        (1, 0, 0, (0, 64), (0, 16), True, True, False),
        (1, 0, 1, (0, 64), (16, 32), True, True, False),
        (2, 0, 0, (0, 16), (0, 16), True, False, False),
        (2, 0, 1, (0, 16), (16, 32), True, False, False),
        (2, 1, 0, (16, 32), (0, 16), False, False, False),
        (2, 1, 1, (16, 32), (16, 32), False, False, False),
        (3, 0, 0, (0, 16), (0, 10), True, False, True),
        (3, 1, 0, (16, 32), (0, 10), False, False, True),
    ]
    for rank, (m, i, j, rows, cols, bias, feat, lab) in enumerate(expected):
        p = g.partition(rank)
        assert (p.m, p.i, p.j, p.rank) == (m, i, j, rank)
        assert p.rows == range(*rows) and p.cols == range(*cols)
        assert (p.has_bias, p.holds_features, p.holds_labels) == (bias, feat, lab)
        assert g.rank_of(m, i, j) == rank
    assert str(g.partition(0)) == "rank 0: W^1[0:64, 0:16] + b^1[0:16], holds X[:, 0:64]"
    assert str(g.partition(3)) == "rank 3: W^2[0:16, 16:32] + b^2[16:32]"
    assert str(g.partition(4)) == "rank 4: W^2[16:32, 0:16]"
    assert str(g.partition(6)) == "rank 6: W^3[0:16, 0:10] + b^3[0:10], holds Y[:, 0:10]"
    assert str(g.partition(7)) == "rank 7: W^3[16:32, 0:10], holds Y[:, 0:10]"
    assert g.feature_holders == {0: (0, 1)}
    assert g.label_holders == {0: (6, 7)}
    assert g.output_group == (6, 7)
    assert g.column_group(2, 1) == (3, 5)
    assert g.row_group(2, 1) == (4, 5)
    assert g.link_group(1, 0) == (0, 2, 3)     # s^1[0:16] is summed on rank 0; ranks 2, 3 consume z^1[0:16]
    assert g.link_group(2, 1) == (3, 5, 7)
    assert g.link_group(3, 0) == (6, 7)
    assert [p.n_params for p in g.partitions] == \
        [64 * 16 + 16] * 2 + [16 * 16 + 16] * 2 + [256] * 2 + [170, 160]
    assert g.n_params == 65 * 32 + 33 * 32 + 33 * 10 == 3466


def test_worked_example_jacobian_messages_by_hand():
    """docs/method.md §5's worked example: layer 3 sends W^3's rows (10 x 16) once over each
    link(2, j) of 3 ranks; link(1, j) (3 ranks) carries D^1 on S, 72 x 10 x 16, in one chunk."""
    from dnewton_core import costs
    g = Grid((64, 32, 32, 10), (1, 2, 2, 1))
    once, on_S = 2 * 3 * 8 * 10 * 16, 2 * 3 * 8 * 72 * 10 * 16
    assert costs.jacobian(g, 72, 4096) == {"messages": 2 * 3 + 2 * 3, "bytes": once + on_S}
    assert once + on_S == 560_640 == 10 * 768 * (72 + 1)
    two_chunks = costs.jacobian(g, 72, 400)            # chunks of 400 // 10 = 40 instances
    assert two_chunks == {"messages": 6 + 2 * 6, "bytes": once + on_S}
    assert costs.jacobian(Grid((64, 32, 10), (2, 1, 1)), 72, 4096) == \
        {"messages": 3, "bytes": 3 * 8 * 10 * 32}      # L = 2: W^2's rows only, no D on S


def test_describe_lists_every_rank_with_bytes():
    g = Grid((64, 32, 32, 10), (1, 2, 2, 1))
    text = g.describe()
    lines = text.splitlines()
    assert len(lines) == 3 + g.size
    assert "8 partitions (one MPI rank each)" in lines[0]
    assert "1 partition (one MPI rank)," in Grid((4, 2), (1, 1)).describe()
    assert "2 partitions (on 1 MPI rank)," in Grid((4, 3, 2), (1, 1, 1), 1).describe()
    assert Grid((4, 3, 2), (1, 1, 1), 1).held() == "2 a rank"
    assert Grid((64, 32, 32, 10), (1, 2, 2, 1), 3).held() == "3, 3, 2 on ranks 0-2"
    for p, line in zip(g.partitions, lines[3:]):
        cells = line.split()
        assert cells[0] == str(p.rank)
        assert cells[-1] == str(8 * p.n_params)                 # float64 parameter bytes
        assert f"({p.m}, {p.i}, {p.j})" in line and f"{len(p.rows)}x{len(p.cols)}" in line
    assert "X[:, 0:64]" in lines[3] and "Y[:, 0:10]" in lines[-1] and "b^3[0:10]" in lines[-2]
    with_data = g.describe(n_instances=100).splitlines()
    assert with_data[3].split()[-1] == str(100 * 64 * 8)         # rank 0 holds 64 feature columns
    assert with_data[-1].split()[-1] == str(100 * 8)             # rank 7: a class code each
    assert with_data[5].split()[-1] == "0"


# ---------------------------------------------------------------------------- structure

@pytest.mark.parametrize("layers, splits", GRIDS, ids=grid_ids(GRIDS))
def test_size_formula_and_rank_order(layers, splits):
    g = Grid(layers, splits)
    assert g.size == sum(splits[m - 1] * splits[m] for m in range(1, len(layers)))
    assert len(g.partitions) == g.size
    order = [(p.m, p.i, p.j) for p in g.partitions]
    assert order == sorted(order)                               # layer, then i, then j
    assert [p.rank for p in g.partitions] == list(range(g.size))
    for p in g.partitions:
        assert g.partition(p.rank) is p
        assert g.rank_of(p.m, p.i, p.j) == p.rank
        assert p.rows == neuron_groups(layers[p.m - 1], splits[p.m - 1])[p.i]
        assert p.cols == neuron_groups(layers[p.m], splits[p.m])[p.j]
        assert p.block_shape == (len(p.rows), len(p.cols))
    for m in range(len(layers)):
        assert g.groups(m) == neuron_groups(layers[m], splits[m])


@pytest.mark.parametrize("layers, splits", GRIDS, ids=grid_ids(GRIDS))
def test_every_parameter_held_exactly_once(layers, splits):
    g = Grid(layers, splits)
    assert g.n_params == sum((a + 1) * b for a, b in zip(layers[:-1], layers[1:]))
    assert sum(p.n_params for p in g.partitions) == g.n_params
    slices = [g.param_slices(r) for r in range(g.size)]
    for r, s in enumerate(slices):
        assert s.dtype == np.int64 and s.ndim == 1 and len(s) == g.partition(r).n_params
    assert np.array_equal(np.sort(np.concatenate(slices)), np.arange(g.n_params))


@pytest.mark.parametrize("layers, splits", GRIDS, ids=grid_ids(GRIDS))
def test_param_slices_pick_the_block_and_bias_out_of_flatten(layers, splits):
    g = Grid(layers, splits)
    params = reference.init_params(layers, seed=3)
    # nonzero biases
    params = [(W, np.arange(len(b)) + 100.0 * m) for m, (W, b) in enumerate(params, start=1)]
    theta = reference.flatten(params)
    for p in g.partitions:
        W, b = params[p.m - 1]
        local = W[p.rows.start:p.rows.stop, p.cols.start:p.cols.stop].ravel()
        if p.has_bias:
            local = np.concatenate([local, b[p.cols.start:p.cols.stop]])
        assert np.array_equal(theta[g.param_slices(p.rank)], local)
    # scatter back: assembling all local blocks reproduces theta
    rebuilt = np.full_like(theta, np.nan)
    for r in range(g.size):
        rebuilt[g.param_slices(r)] = theta[g.param_slices(r)]
    assert np.array_equal(rebuilt, theta)


@pytest.mark.parametrize("layers, splits", GRIDS + [((3, 70000, 2), (1, 3, 2))],
                         ids=grid_ids(GRIDS) + ["rows-longer-than-a-chunk"])
def test_each_block_drawn_alone_is_the_whole_networks_block_bit_for_bit(layers, splits):
    g = Grid(layers, splits)
    theta = reference.flatten(reference.init_params(layers, seed=5))
    for p in g.partitions:
        W, b = reference.init_block(layers, 5, p.m, p.rows, p.cols)
        assert W.shape == p.block_shape and not b.any()
        local = np.concatenate([W.ravel(), b if p.has_bias else []])
        assert np.array_equal(local, theta[g.param_slices(p.rank)])


@pytest.mark.parametrize("layers, splits", GRIDS, ids=grid_ids(GRIDS))
def test_bias_held_exactly_once_per_layer_and_column_group(layers, splits):
    g = Grid(layers, splits)
    for m in range(1, g.L + 1):
        covered = []
        for j in range(splits[m]):
            holders = [p for p in g.partitions if p.m == m and p.j == j and p.has_bias]
            assert len(holders) == 1 and holders[0].i == 0
            covered.extend(holders[0].cols)
        assert covered == list(range(layers[m]))


@pytest.mark.parametrize("layers, splits", GRIDS, ids=grid_ids(GRIDS))
def test_group_memberships(layers, splits):
    g = Grid(layers, splits)
    L = g.L
    for m in range(1, L + 1):
        for j in range(splits[m]):
            col = g.column_group(m, j)
            assert [(g.partition(r).m, g.partition(r).j) for r in col] == [(m, j)] * splits[m - 1]
            assert [g.partition(r).i for r in col] == list(range(splits[m - 1]))
            link = g.link_group(m, j)
            if m < L:
                # the next layer's row group j consumes z^m on T_{m,j}: its rows are exactly this output range
                nxt = g.row_group(m + 1, j)
                assert link == col + nxt
                assert all(g.partition(r).rows == g.partition(col[0]).cols for r in nxt)
            else:
                assert link == col
            assert len(set(link)) == len(link)
        for i in range(splits[m - 1]):
            row = g.row_group(m, i)
            assert [(g.partition(r).m, g.partition(r).i) for r in row] == [(m, i)] * splits[m]
            assert [g.partition(r).j for r in row] == list(range(splits[m]))
        # column groups of one layer partition that layer's ranks; so do its row groups
        layer_ranks = sorted(p.rank for p in g.partitions if p.m == m)
        assert sorted(r for j in range(splits[m]) for r in g.column_group(m, j)) == layer_ranks
        assert sorted(r for i in range(splits[m - 1]) for r in g.row_group(m, i)) == layer_ranks
    assert g.output_group == tuple(p.rank for p in g.partitions if p.m == L)
    assert g.feature_holders == {i: tuple(p.rank for p in g.partitions if p.m == 1 and p.i == i)
                                 for i in range(splits[0])}
    assert g.label_holders == {j: tuple(p.rank for p in g.partitions if p.m == L and p.j == j)
                               for j in range(splits[L])}
    assert sorted(r for rs in g.label_holders.values() for r in rs) == list(g.output_group)
    for p in g.partitions:
        assert p.holds_features == (p.m == 1) and p.holds_labels == (p.m == L)


def test_groups_uneven_with_split_output_layer():
    g = Grid((7, 5, 3), (2, 3, 2))   # layer 1: 2x3 = 6 ranks, layer 2: 3x2 = 6 ranks
    assert g.size == 12
    assert g.groups(0) == [range(0, 4), range(4, 7)]
    assert g.groups(1) == [range(0, 2), range(2, 4), range(4, 5)]
    assert g.groups(2) == [range(0, 2), range(2, 3)]
    assert g.column_group(1, 2) == (2, 5)
    assert g.row_group(2, 2) == (10, 11)
    assert g.link_group(1, 2) == (2, 5, 10, 11)
    assert g.link_group(2, 1) == (7, 9, 11)
    assert g.output_group == tuple(range(6, 12))
    assert g.label_holders == {0: (6, 8, 10), 1: (7, 9, 11)}
    assert g.feature_holders == {0: (0, 1, 2), 1: (3, 4, 5)}
    p = g.partition(11)
    assert (p.m, p.i, p.j, p.rows, p.cols, p.has_bias) == (2, 2, 1, range(4, 5), range(2, 3), False)
    assert str(p) == "rank 11: W^2[4:5, 2:3], holds Y[:, 2:3]"
    assert p.n_params == 1 and g.partition(7).n_params == 2 * 1 + 1


# ---------------------------------------------------------------------------- validation

def test_grid_accepts_lists_and_numpy_ints():
    g = Grid([4, 3, 2], [np.int64(2), 1, 1])
    assert g.layers == (4, 3, 2) and g.splits == (2, 1, 1)
    assert all(type(v) is int for v in g.layers + g.splits)
    assert hash(g) == hash(Grid((4, 3, 2), (2, 1, 1)))


@pytest.mark.parametrize("layers, splits, message", [
    ((64, 32, 32, 10), (1, 2, 40, 1), "split P_2 = 40 is larger than layer 2's 32 neurons"),
    ((64, 32, 32, 10), (1, 2, 2), "needs L+1 = 4"),
    ((64, 32, 32, 10), (1, 0, 2, 1), "P_1 = 0 must be at least 1"),
    ((64,), (1,), "at least 2 entries"),
    ((64, 0, 10), (1, 1, 1), "layer 1 has 0 neurons"),
    ((64, 32.0, 10), (1, 1, 1), "must be an integer"),
    ((64, 32, 10), (1, True, 1), "must be an integer"),
    ((64, 32, 10), "111", "sequence of integers"),
])
def test_grid_validation_messages(layers, splits, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        Grid(layers, splits)


def test_out_of_range_indices_raise():
    g = Grid((7, 5, 3), (2, 3, 2))
    for bad in [(0, 0, 0), (3, 0, 0), (1, 2, 0), (1, 0, 3), (2, 0, -1)]:
        with pytest.raises(ValueError):
            g.rank_of(*bad)
    for bad in (-1, 12, 1.0):
        with pytest.raises(ValueError, match="out of range"):
            g.partition(bad)
    with pytest.raises(ValueError):
        g.groups(3)


def test_partition_is_frozen():
    p = Grid((4, 2), (2, 1)).partition(0)
    assert isinstance(p, Partition)
    with pytest.raises(AttributeError):
        p.rank = 5


def test_parse_splits():
    assert parse_splits("1,2,2,1", (64, 32, 32, 10)) == (1, 2, 2, 1)
    assert parse_splits(" 2, 1 ,1,1 ", [64, 32, 32, 10]) == (2, 1, 1, 1)
    with pytest.raises(ValueError, match=r"needs L\+1 = 4 entries"):
        parse_splits("1,2,1", (64, 32, 32, 10))
    for bad in ("", "1,a,2,1", "1,,2,1", "1;2;2;1", "1,-2,2,1", "1,2.5,2,1"):
        with pytest.raises(ValueError, match="4 comma-separated positive integers"):
            parse_splits(bad, (64, 32, 32, 10))
    with pytest.raises(ValueError, match="larger than layer 2's 32 neurons"):
        parse_splits("1,2,40,1", (64, 32, 32, 10))


def test_check_rank_count():
    g = Grid((64, 32, 32, 10), (1, 2, 2, 1))
    for n in (8, 4, 1):                                         # one partition a rank, or several
        check_rank_count(g, n)
    with pytest.raises(ValueError) as err:
        check_rank_count(g, 9)
    assert str(err.value) == ("splits 1,2,2,1 have 8 partitions, for at most 8 MPI ranks, but 9 "
                              "were started; for 9 ranks use splits 1,4,1,1 (splits=(1, 4, 1, 1) "
                              "in Python, --splits 1,4,1,1 on the command line)")
    with pytest.raises(ValueError, match="no splits work for 3 ranks"):
        check_rank_count(Grid((1, 1, 1), (1, 1, 1)), 3)


# ---------------------------------------------------------------------------- propose_splits

def brute_force_best(layers, n_ranks):
    """Every split, scored by the largest Partition.n_params of its Grid; None if none fits."""
    candidates, layered = [], []
    for splits in itertools.product(*[range(1, n + 1) for n in layers]):
        g = Grid(layers, splits)
        if g.size == n_ranks:
            candidates.append((max(p.n_params for p in g.partitions), splits[-1], splits))
        if all(splits[m - 1] * splits[m] == n_ranks for m in range(1, len(layers))):
            g = Grid(layers, splits, n_ranks)
            columns = max(len(g.data_held(r)[0] or ()) for r in range(n_ranks))
            most = max(sum(p.n_params for p in g.blocks(r)) for r in range(n_ranks))
            layered.append((columns, most, splits[-1], splits))
    return min(candidates or layered)[-1] if candidates or layered else None


@pytest.mark.parametrize("layers", [(6, 4, 3), (5, 4, 4, 3), (8, 3, 5, 2), (3, 6, 2, 4), (4, 4, 4, 4, 2)])
def test_propose_splits_matches_brute_force(layers):
    for n_ranks in range(1, 30):
        expected = brute_force_best(layers, n_ranks)
        if expected is None:
            with pytest.raises(ValueError, match=f"nor {n_ranks} in every layer"):
                propose_splits(layers, n_ranks)
        else:
            got = propose_splits(layers, n_ranks)
            assert got == expected, (layers, n_ranks)
            g = Grid(layers, got, n_ranks)
            # exactly one partition a rank, or (none such) one block of every layer a rank
            assert g.size == n_ranks or all(
                [p.m for p in g.blocks(r)] == list(range(1, g.L + 1)) for r in range(n_ranks))


@pytest.mark.parametrize("layers", [(6, 4, 3), (5, 4, 4, 3), (4, 4, 4, 4, 2)])
def test_all_splits_are_every_grid_of_that_many_ranks(layers):
    for n_ranks in range(1, 25):
        expected = [s for s in itertools.product(*[range(1, n + 1) for n in layers])
                    if Grid(layers, s).size == n_ranks]
        assert all_splits(layers, n_ranks) == expected, (layers, n_ranks)


@pytest.mark.parametrize("layers, n_ranks, expected", [
    ((64, 32, 32, 10), 3, (1, 1, 1, 1)),
    ((64, 32, 32, 10), 4, (2, 1, 1, 1)),
    ((64, 32, 32, 10), 8, None),
    ((784, 300, 300, 10), 16, None),
    ((2, 2), 4, (2, 2)),
])
def test_propose_splits_examples(layers, n_ranks, expected):
    got = propose_splits(layers, n_ranks)
    assert Grid(layers, got).size == n_ranks
    if expected is not None:
        assert got == expected


def test_propose_splits_tie_breaks():
    # layers 1-3-2 on 6 ranks: (1,2,2) -> max(1*2+2, 2*1+1) = 4 and (1,3,1) -> max(1*1+1, 1*2+2) = 4 tie;
    # the unsplit output layer wins although (1,2,2) is lexicographically smaller.
    assert propose_splits((1, 3, 2), 6) == (1, 3, 1)
    # layers 1-2-6 on 6 ranks: (1,1,5) -> max(1*2+2, 2*2+2) = 6 and (1,2,2) -> max(1*1+1, 1*3+3) = 6 tie.
    assert propose_splits((1, 2, 6), 6) == (1, 2, 2)
    # layers 2-5-1 on 6 ranks: (1,3,1) and (2,2,1) both have largest partition 6 and P_L = 1: lexicographic.
    assert propose_splits((2, 5, 1), 6) == (1, 3, 1)
    # a smaller largest partition beats an unsplit output layer: 64-32-32-10 on 6 ranks
    # (1,2,1,2): max(64*16+16, 16*32+32, 32*5+5) = 1040 < (4,1,1,1): 16*32+32 = 544, 32*32+32 = 1056.
    assert propose_splits((64, 32, 32, 10), 6) == (1, 2, 1, 2)


def test_fewer_ranks_than_layers_get_a_block_of_every_layer():
    # 64-32-32-10 on 2 ranks: (1,2,1,2) holds at most 64*16+16 + 16*32 + 32*5+5 = 1717
    # parameters a rank, (2,1,2,1) 32*32+32 + 32*16+16 + 16*10+10 = 1754, but each rank of
    # (1,2,1,2) holds all 64 feature columns, of (2,1,2,1) 32: the data set counts first
    assert propose_splits((64, 32, 32, 10), 2) == (2, 1, 2, 1)
    assert Grid((64, 32, 32, 10), (2, 1, 2, 1), 2).data_held(1) == (range(32, 64), True)
    g = Grid((64, 32, 32, 10), (1, 2, 1, 2), 2)
    assert [str(p) for p in g.blocks(1)] == [
        "partition 1 on rank 1: W^1[0:64, 16:32] + b^1[16:32], holds X[:, 0:64]",
        "partition 3 on rank 1: W^2[16:32, 0:32]",
        "partition 5 on rank 1: W^3[0:32, 5:10] + b^3[5:10], holds Y[:, 5:10]"]
    assert g.link_group(1, 1) == (1,) and g.link_group(2, 0) == (0, 1)
    assert g.describe(100).splitlines()[-2:] == [    # a line a rank: X and the codes once
        "rank 0 holds partitions 0, 2, 4, X[:, 0:64], the class codes: "
        f"{8 * (64 * 16 + 16 + 16 * 32 + 32 + 32 * 5 + 5)} param bytes, {100 * 65 * 8} data bytes",
        "rank 1 holds partitions 1, 3, 5, X[:, 0:64], the class codes: "
        f"{8 * (64 * 16 + 16 + 16 * 32 + 32 * 5 + 5)} param bytes, {100 * 65 * 8} data bytes"]
    assert g.data_held(1) == (range(0, 64), True)
    covered = np.sort(np.concatenate([g.param_slices(r) for r in range(2)]))
    assert np.array_equal(covered, np.arange(g.n_params))


@pytest.mark.parametrize("layers, n_ranks, message", [
    ((64, 32, 32, 10), 0, "at least 1 MPI rank"),
    ((1, 1, 1), 3, "nor 3 in every layer"),
    ((2, 1), 3, "nor 3 in every layer"),
    ((64, 0, 10), 3, "layer 1 has 0 neurons"),
])
def test_propose_splits_impossible(layers, n_ranks, message):
    with pytest.raises(ValueError, match=message):
        propose_splits(layers, n_ranks)


def test_propose_splits_is_fast_for_deep_networks():
    import time
    start = time.perf_counter()
    for n_ranks in (6, 17, 32, 63, 64):
        splits = propose_splits((784, 300, 300, 300, 300, 300, 10), n_ranks)
        assert Grid((784, 300, 300, 300, 300, 300, 10), splits).size == n_ranks
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("splits", [(2, 1, 1, 1), (1, 2, 2), (1, 1, 2), (3, 1, 3), (2, 1, 2, 1),
                                    (1, 3, 2, 2), (2, 2, 1, 3)])
def test_each_link_collective_roots_at_its_one_sender_or_receiver(splits):
    grid = Grid((7,) + (6,) * (len(splits) - 2) + (4,), splits)
    for m in range(1, grid.L + 1):
        for j in range(grid.splits[m]):
            link = grid.link_group(m, j)
            senders = {"fwd": grid.column_group(m, j),
                       "back": grid.row_group(m + 1, j) if m < grid.L else ()}
            receivers = {"fwd": link, "back": grid.column_group(m, j)}
            for way, back in (("fwd", False), ("back", True)):
                if way == "back" and m == grid.L:
                    continue
                op, root = link_op(grid, m, j, back)
                if op == "bcast":
                    assert senders[way] == (link[root],)
                elif op == "reduce":
                    assert receivers[way] == (link[root],) and len(senders[way]) > 1
                else:
                    assert root is None and len(senders[way]) > 1

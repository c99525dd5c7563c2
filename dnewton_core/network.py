"""What a message costs on a network (docs/method.md §8): Hockney's model, with the
algorithms MPICH uses for each collective. Pure functions; no MPI here.

Sending n bytes point to point costs ``alpha + n beta`` (alpha the latency, beta = 1 /
bandwidth), and reducing n bytes adds ``n gamma``. For p ranks, with p' the largest power
of two <= p (Thakur, Rabenseifner and Gropp, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1), 2005; MPICH folds the p - p' extra ranks into
partners first and sends them the result last, one step each):

  allreduce, n <= 2048 bytes (recursive doubling)    lg p' (alpha + n beta + n gamma)
  allreduce, longer (Rabenseifner: reduce-scatter, then allgather)
                                  2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma
    + when p != p': (alpha + n beta + n gamma) before and (alpha + n beta) after
  bcast, n <= 12288 bytes (binomial tree)            ceil(lg p) (alpha + n beta)
  bcast, longer (scatter, then allgather)   (ceil(lg p) + p - 1) alpha + 2 (p-1)/p n beta
  reduce, n <= 2048 bytes (binomial tree)            ceil(lg p) (alpha + n beta + n gamma)
  reduce, longer (Rabenseifner: reduce-scatter, then gather)
                                  2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma
    + when p != p': (alpha + n beta + n gamma) before
  gather, allgather of n bytes from each rank         ceil(lg p) alpha + (p-1) n beta
  a point-to-point send (isend)                       alpha + n beta

The size thresholds are MPICH's defaults (MPIR_CVAR_ALLREDUCE_SHORT_MSG_SIZE = 2048,
MPIR_CVAR_BCAST_SHORT_MSG_SIZE = 12288, MPIR_CVAR_REDUCE_SHORT_MSG_SIZE = 2048). Every
rank of the group is charged the whole time.
"""
import math
from dataclasses import dataclass

ALLREDUCE_SHORT = 2048       # bytes: MPICH's switch from recursive doubling to Rabenseifner
BCAST_SHORT = 12288          # bytes: MPICH's switch from a binomial tree to scatter-allgather
REDUCE_SHORT = 2048          # bytes: MPICH's switch from a binomial tree to Rabenseifner


@dataclass(frozen=True)
class Network:
    """A network's parameters; ``source`` says where the numbers come from."""
    name: str
    latency: float           # alpha, seconds per message
    bandwidth: float         # 1 / beta, bytes per second
    gamma: float = 2.5e-10   # seconds per byte reduced (kit's estimate: 4 GB/s of summing)
    source: str = ""

    def __post_init__(self):
        for field in ("latency", "bandwidth", "gamma"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0) or (field == "bandwidth" and not value > 0):
                raise ValueError(f"network {self.name}: {field} must be a finite number "
                                 f"{'> 0' if field == 'bandwidth' else '>= 0'}, got {value!r}")

    @property
    def beta(self):
        return 1.0 / self.bandwidth


PRESETS = {
    "infiniband": Network("infiniband", 1.5e-6, 25e9, source="InfiniBand HDR, typical: "
                          "alpha about 1-2 us, 1/beta about 25 GB/s"),
    "10gbe": Network("10gbe", 20e-6, 1.25e9, source="10 Gbit Ethernet, typical: alpha about "
                     "10-30 us, 1/beta 1.25 GB/s"),
    "1gbe": Network("1gbe", 50e-6, 125e6, source="1 Gbit Ethernet, typical: alpha about 50 us, "
                    "1/beta 125 MB/s"),
    "wifi": Network("wifi", 2e-3, 6.25e6, source="kit's rough figure for a shared classroom "
                    "Wi-Fi: 2 ms, 50 Mbit/s"),
}


def network_names(values):
    """The names of ``--network`` values, each a name or a comma-separated list of them."""
    return [name for value in values or () for name in value.split(",") if name]


def parse_network(text):
    """None for "none", a preset by name, or LATENCY_US:BANDWIDTH_GBIT[:GAMMA_NS_PER_BYTE]."""
    if text in (None, "", "none"):
        return None
    if text in PRESETS:
        return PRESETS[text]
    try:
        parts = [float(x) for x in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
    except ValueError:
        raise ValueError(f"--network: expected none, {', '.join(PRESETS)} or "
                         f"LATENCY_US:BANDWIDTH_GBIT[:GAMMA_NS_PER_BYTE], got {text!r}") from None
    gamma = parts[2] * 1e-9 if len(parts) == 3 else Network.gamma
    try:
        return Network(text, parts[0] * 1e-6, parts[1] * 1e9 / 8, gamma,
                       source="given on the command line")
    except ValueError:          # Network's own check, said in the units the user typed
        raise ValueError(f"--network {text}: the latency (us) and gamma (ns per byte) must be "
                         "finite numbers >= 0, the bandwidth (Gbit/s) a finite number > 0") from None


def _lg(p):
    return math.ceil(math.log2(p)) if p > 1 else 0


def allreduce(n, p, net):
    """Seconds of an allreduce of n bytes over p ranks."""
    if p <= 1:
        return 0.0
    a, b, c = net.latency, net.beta, net.gamma
    p2 = 1 << (p.bit_length() - 1)
    fold = (a + n * b + n * c) + (a + n * b) if p2 != p else 0.0
    steps = p2.bit_length() - 1
    if n <= ALLREDUCE_SHORT:
        return fold + steps * (a + n * b + n * c)
    share = (p2 - 1) / p2 * n
    return fold + 2 * steps * a + 2 * share * b + share * c


def bcast(n, p, net):
    """Seconds of a broadcast of n bytes to p ranks."""
    if p <= 1:
        return 0.0
    a, b = net.latency, net.beta
    if n <= BCAST_SHORT:
        return _lg(p) * (a + n * b)
    return (_lg(p) + p - 1) * a + 2 * (p - 1) / p * n * b


def reduce(n, p, net):
    """Seconds of a reduction of n bytes from p ranks to one: a binomial tree up to
    REDUCE_SHORT bytes, else Rabenseifner's reduce-scatter, then a gather to the root."""
    if p <= 1:
        return 0.0
    a, b, c = net.latency, net.beta, net.gamma
    if n <= REDUCE_SHORT:
        return _lg(p) * (a + n * b + n * c)
    p2 = 1 << (p.bit_length() - 1)
    fold = a + n * b + n * c if p2 != p else 0.0
    share = (p2 - 1) / p2 * n
    return fold + 2 * (p2.bit_length() - 1) * a + 2 * share * b + share * c


def gather(n, p, net):
    """Seconds of a gather (or allgather) of n bytes from each of p ranks."""
    return _lg(p) * net.latency + (p - 1) * n * net.beta if p > 1 else 0.0


def send(n, net):
    """Seconds of one point-to-point message of n bytes."""
    return net.latency + n * net.beta


SECONDS = {"allreduce": allreduce, "bcast": bcast, "reduce": reduce, "gather": gather,
           "allgather": gather,
           "waitall": lambda n, p, net: 0.0}   # the sync notifications, charged when sent


def seconds(op, n, p, net):
    """Seconds of collective ``op`` (a key of SECONDS) of n bytes per rank over p ranks."""
    return SECONDS[op](n, p, net)

"""Real data sets, offline by default.

Every loader returns a :class:`Dataset`. Samples are rows: ``X_train`` is ``(l, n_0)`` float64
(or float32, the float64 values rounded once, for a model computing in float32), ``y_train``
is ``(l,)`` int64 with labels ``0..k-1``; ``classes[c]`` is the original label of class ``c``.

Sources (see ``data/README.md`` for how to get the files):

* ``digits`` (default) -- scikit-learn's bundled 8x8 digits, no files needed. A seeded,
  stratified 80/20 split; pixels divided by 16.
* ``fashion-mnist``, ``mnist`` -- the four IDX files (``train-images-idx3-ubyte[.gz]`` ...) in
  a directory; pixels divided by 255, images flattened to 784 features. Fashion-MNIST is looked
  for in ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) if no path
  is given.
* ``satimage``, ``letter``, ``shuttle``, ``dna`` -- the Statlog sets as R data files of the R
  package mlbench (``Satellite.rda``, ...), read with the pure-Python package ``rdata`` (R is never
  started); found where Debian's ``r-cran-mlbench`` installs them (``MLBENCH_DIRS``), or in the
  directory (or file) ``path``. The standard split: the first rows train, the last test
  (``STATLOG_FILES``); features scaled to [-1, 1] from the training part as LIBSVM's ``.scale``
  files are (:func:`svm_scale`), except shuttle's and letter's, standardized
  (:func:`standardize`: under [-1, 1] a few outliers squeeze shuttle's columns into narrow
  bands, and letter gains a point; results/defaults/README.md), and DNA's 0/1 indicators kept
  as 0/1.
* ``letter-libsvm``, ``satimage-libsvm``, ``pendigits``, ``usps``, ``sensit-vehicle``,
  ``mnist-libsvm`` -- the LIBSVM files of the paper's experiments in a directory (plain or
  ``.bz2``); with no path, ``data/cache/<name>`` (where :func:`download_libsvm` puts them) is
  tried.
* ``svmlight`` -- any svmlight/LIBSVM file pair, ``path="TRAIN[,TEST]"``; with no test file a
  seeded, stratified 80/20 split of TRAIN.

One rank of a grid keeps only its share (docs/method.md §3): :func:`open_dataset` reads the
sizes and the labels, and ``Source.share(features, labels)`` the rank's feature columns, from
IDX files as they stream (the pixels of other columns are never held), from svmlight files
by making only its columns of the sparse matrices dense, from the R data files by slicing
what was read whole (the Source is then dropped): a :class:`Share`.

Nothing is ever downloaded unless :func:`download_libsvm` is called explicitly. Every problem
with the data raises :class:`DataError` with a message naming the file (``FILE:LINE: ...`` where
a line applies): among them a test file with feature indices beyond the training file's, and a
training part with fewer than two classes. Test classes never seen in training, and in
svmlight files one feature index far above all others (a typo that would set the input
width), are only a :class:`DataWarning`.
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import os
import re
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import DTYPES


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


class DataWarning(UserWarning):
    """Data that can be used but is suspect (test classes never seen in training, a stray
    feature index that alone sets an svmlight file's width)."""


def warn(message, category=UserWarning):
    """``warnings.warn`` shown at the caller's line: the first frame outside this package
    (a script's or a notebook cell's), whichever of the kit's functions it called, and
    through ``dataclasses`` (``replace`` builds a ``Dataset`` anew; the ``__init__`` that
    ``dataclass`` writes runs in this module)."""
    inside = (__name__.partition(".")[0], "dataclasses")
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in inside:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class _Sizes:
    """The counts every data set answers from its classes and labels."""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


@dataclass(frozen=True, eq=False)
class Dataset(_Sizes):
    """A train/test pair. Samples are rows; labels are ``0..k-1``, ``classes[c]`` is the original
    label of class ``c``. Arrays are converted to ``dtype`` (float64 or float32) / int64 and
    checked on construction; the training part must hold at least two classes, and test
    classes it lacks give a :class:`DataWarning`. (``eq=False``: compare the arrays
    yourself; ``==`` on arrays is elementwise.)"""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple
    source: str
    dtype: str = "float64"        # of X: float64, or float32 for a float32 model

    def __post_init__(self):
        set_ = lambda field, value: object.__setattr__(self, field, value)
        set_("classes", tuple(self.classes))
        if self.dtype not in DTYPES:
            raise DataError(f"{self.name}: dtype must be one of {', '.join(DTYPES)}, "
                            f"got {self.dtype!r}")
        k = len(self.classes)
        for part in ("train", "test"):
            X = np.asarray(getattr(self, "X_" + part), dtype=self.dtype)
            y = np.asarray(getattr(self, "y_" + part))
            where = f"{self.name} ({self.source}), {part} part"
            if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
                raise DataError(f"{where}: need X (l, n) and y (l,) with l > 0, "
                                f"got X {X.shape} and y {y.shape}")
            if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= k)):
                raise DataError(f"{where}: labels must be integers in 0..{k - 1}")
            _check_finite(X, where)
            set_("X_" + part, X)
            set_("y_" + part, y.astype(np.int64))
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise DataError(f"{self.name} ({self.source}): train has {self.X_train.shape[1]} "
                            f"features, test has {self.X_test.shape[1]}")
        _check_classes(f"{self.name} ({self.source})", self.classes, self.y_train, self.y_test)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def share(self, features=None, labels=False, limit=None, dtype=None):
        """The :class:`Share` of a rank holding the feature columns ``features`` (a range, or
        None) and, if ``labels``, the labels, in ``dtype`` (None: this Dataset's); copies,
        so the Dataset may be dropped."""
        return Source(self.name, self.classes, self.y_train, self.y_test, self.n_features,
                      self.source, dataset=self).share(features, labels, limit,
                                                       dtype or self.dtype)


def _check_classes(where, classes, y_train, y_test):
    """DataError if the training part holds fewer than two classes; DataWarning naming the
    test classes that the training part never shows."""
    seen = np.unique(y_train)
    if seen.size < 2:
        raise DataError(f"{where}: the training part has only one class "
                        f"({classes[seen[0]]!r}, all {y_train.size} samples); "
                        "a classifier needs at least two")
    unseen = np.setdiff1d(np.unique(y_test), seen)
    if unseen.size:
        labels = ", ".join(repr(classes[c]) for c in unseen)
        warn(f"{where}: the test part has classes never seen in training: {labels} "
             f"({np.isin(y_test, unseen).sum()} of {y_test.size} test samples); a model "
             "trained on this split never sees them", DataWarning)


@dataclass(frozen=True, eq=False)
class Share:
    """What one rank keeps of a data set (docs/method.md §3): the feature columns
    ``features`` = T_{0,i} of X (partitions (1, i, j)), the labels (partitions (L, i, j)),
    both, or neither, and the sizes every rank needs. Samples are rows: ``X_train`` is
    (l, |features|) float64 or float32, ``y_train`` (l,) int64 class codes; None where not
    kept."""

    name: str
    n_features: int
    classes: tuple
    n_train: int
    n_test: int
    source: str
    features: range | None = None
    X_train: np.ndarray | None = None
    X_test: np.ndarray | None = None
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def share(self, features=None, labels=False, limit=None, dtype=None):
        """Itself, if it holds the columns ``features`` and (``labels``) the labels, for
        the first ``limit`` (None: all) training instances; ValueError otherwise. With
        another ``dtype`` than its columns', a copy with the columns cast to it."""
        held = (f"X[:, {_span(self.features)}]" if self.features else "no feature columns") + \
            (" and the labels" if self.y_train is not None else "")
        if features != self.features or (labels and self.y_train is None) or \
                (limit is not None and limit < self.n_train):
            raise ValueError(f"this rank read {held} of {self.n_train} training instances of "
                             f"{self.name}; its partition needs "
                             f"{'X[:, ' + _span(features) + ']' if features else 'no features'}"
                             f"{' and the labels' if labels else ''}")
        if dtype is None or self.X_train is None or self.X_train.dtype == dtype:
            return self
        return dataclasses.replace(self, X_train=self.X_train.astype(dtype),
                                   X_test=self.X_test.astype(dtype))


def _span(r):
    return f"{r.start}:{r.stop}"


@dataclass(frozen=True, eq=False)
class Source(_Sizes):
    """A data set opened but not yet read in full: its sizes and labels, and its features
    either in memory (``dataset``: the formats read whole; ``sparse``: svmlight files, made
    dense column by column) or still in IDX files
    (``images``: {"train", "test"} -> ``IdxImages``), read column by column. ``load`` gives
    all of it (a Dataset), ``share`` one rank's part (a Share); drop the Source after."""

    name: str
    classes: tuple
    y_train: np.ndarray
    y_test: np.ndarray
    n_features: int
    source: str
    dataset: Dataset | None = None
    images: dict | None = None
    sparse: tuple | None = None       # (train, test) sparse matrices: svmlight files

    def _rows(self, limit):
        return self.n_train if limit is None else min(limit, self.n_train)

    def _columns(self, part, features, n=None, dtype="float64"):
        """X_part[:n, features] as a new ``dtype`` array (n: all rows when None)."""
        if self.images is not None:
            return self.images[part].columns(features, n, dtype=dtype)
        if self.sparse is not None:
            X = self.sparse[part == "test"][:n, features.start:features.stop]
            if X.shape[0] * X.shape[1] > _MAX_DENSE:
                raise DataError(f"{self.source}: {X.shape[0]} x {X.shape[1]} is too large to "
                                "hold densely")
            return X.toarray().astype(dtype, copy=False)
        X = getattr(self.dataset, "X_" + part)
        return np.array(X[:n, features.start:features.stop], dtype=dtype)

    def load(self, limit=None, dtype="float64"):
        """The whole Dataset, on its first ``limit`` training instances (None: all), its
        features in ``dtype`` (IDX images are read into it directly)."""
        k = self._rows(limit)
        if self.dataset is not None:
            if k == self.n_train and dtype == self.dataset.dtype:
                return self.dataset
            return dataclasses.replace(self.dataset, X_train=self.dataset.X_train[:k],
                                       y_train=self.y_train[:k], dtype=dtype)
        every = range(self.n_features)
        return Dataset(self.name, self._columns("train", every, k, dtype), self.y_train[:k],
                       self._columns("test", every, dtype=dtype), self.y_test, self.classes,
                       self.source, dtype)

    def digest(self):
        """16 hex digits of a SHA-256 over the data as loaded: labels, classes, sizes and
        features (of IDX files, the unpacked bytes: gzipped or not, the same digest; of
        svmlight files, the nonzeros and their places). Not a
        checksum of the files; what a checkpoint, a saved model and a study's rows record,
        so that the same name on other data is noticed."""
        h = hashlib.sha256(repr((self.name, self.classes, self.n_features)).encode())
        for y in (self.y_train, self.y_test):
            h.update(np.ascontiguousarray(y))
        if self.images is not None:
            for part in ("train", "test"):
                try:
                    with self.images[part]._open() as f:
                        for chunk in iter(lambda: f.read(1 << 22), b""):
                            h.update(chunk)
                except (OSError, EOFError, zlib.error) as e:
                    raise DataError(f"{self.images[part].path}: corrupt gzip data ({e})") from e
        elif self.sparse is not None:                    # the nonzeros and their places
            for X in self.sparse:
                if (X.data == 0).any():                      # "10:0" only widens a file
                    X = X.copy()
                    X.eliminate_zeros()
                h.update(repr(X.shape).encode())
                for a in (X.indptr, X.indices):               # as int64, 1 M at a time
                    for k in range(0, len(a), 1 << 20):
                        h.update(a[k:k + (1 << 20)].astype(np.int64))
                h.update(np.ascontiguousarray(X.data))
        else:
            for X in (self.dataset.X_train, self.dataset.X_test):
                h.update(np.ascontiguousarray(X))             # no copy of a C-ordered X
        return h.hexdigest()[:16]

    def share(self, features=None, labels=False, limit=None, dtype="float64"):
        """The Share of a rank holding the feature columns ``features`` (a range, or None)
        in ``dtype`` and, if ``labels``, the labels, on the first ``limit`` training
        instances."""
        k = self._rows(limit)
        if self.dataset is None or k < self.n_train:     # what a Dataset checks on creation
            _check_classes(f"{self.name} ({self.source})", self.classes, self.y_train[:k],
                           self.y_test)
        X = (self._columns("train", features, k, dtype),
             self._columns("test", features, dtype=dtype)) if features is not None else (None, None)
        y = (self.y_train[:k].copy(), self.y_test.copy()) if labels else (None, None)
        return Share(self.name, self.n_features, self.classes, k, self.n_test, self.source,
                     features, *X, *y)


LIBSVM_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
ZALANDO_URL = "https://github.com/zalandoresearch/fashion-mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CACHE_DIR = "data/cache"
BUNDLED = ("digits",)                 # data sets that come with a package and read no file

DATASETS = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits, 1797 samples, 64 features, "
              "10 classes (embedded, the default)",
    "fashion-mnist": "Zalando's Fashion-MNIST IDX files, 60000/10000, 784 features, 10 classes "
                     f"(default path {FASHION_MNIST_DIR})",
    "mnist": "MNIST IDX files, 60000/10000, 784 features, 10 classes (path=DIR)",
    "satimage": "Statlog Landsat satimage, mlbench's Satellite.rda, 4435/2000, 36 features, "
                "6 classes, scaled to [-1, 1] (found where r-cran-mlbench installs it, or path=DIR|FILE)",
    "letter": "Statlog letter, mlbench's LetterRecognition.rda, 15000/5000, 16 features, 26 classes, "
              "standardized (found where r-cran-mlbench installs it, or path=DIR|FILE)",
    "shuttle": "Statlog shuttle, mlbench's Shuttle.rda, 43500/14500, 9 features, 7 classes, "
               "standardized (found where r-cran-mlbench installs it, or path=DIR|FILE)",
    "dna": "Statlog DNA splice junctions, mlbench's DNA.rda, 2000/1186, 180 binary features, "
           "3 classes (found where r-cran-mlbench installs it, or path=DIR|FILE)",
    "letter-libsvm": "LIBSVM letter.scale[.t], 15000/5000, 16 features, 26 classes (path=DIR)",
    "satimage-libsvm": "LIBSVM satimage.scale[.t], 4435/2000, 36 features, 6 classes (path=DIR)",
    "pendigits": "LIBSVM pendigits[.t], 7494/3498, 16 features, 10 classes (path=DIR)",
    "usps": "LIBSVM usps[.t], 7291/2007, 256 features, 10 classes (path=DIR)",
    "sensit-vehicle": "LIBSVM SensIT Vehicle combined_scale[.t], 78823/19705, 100 features, "
                      "3 classes (path=DIR)",
    "mnist-libsvm": "LIBSVM mnist.scale[.t], 60000/10000, 780 features, 10 classes (path=DIR)",
    "svmlight": "any svmlight/LIBSVM file(s), path=TRAIN[,TEST] (seeded 80/20 split without TEST)",
}


# --------------------------------------------------------------------------- small helpers

def _check_finite(X, where):
    """DataError naming ``where`` and the first row holding a NaN or infinity."""
    bad = ~np.isfinite(X)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(f"{where}: non-finite feature value ({X[row][bad[row]][0]}) in "
                        f"sample {row}")


def class_names(classes):
    """The file's label of each output unit, as text (what a run and a saved model record)."""
    return [str(c) for c in classes]


def coded_as(dataset, saved):
    """``dataset`` with its labels coded as the model's output units, when its classes are
    some of the ``saved`` ones (a model's recorded ``class_names``: a test file that holds
    only some classes); else itself."""
    names = class_names(dataset.classes)
    if saved is None or len(names) >= len(saved) or not set(names) <= set(saved):
        return dataset
    unit = np.array([saved.index(name) for name in names])
    with warnings.catch_warnings():        # checked as it was loaded, and warned once then
        warnings.simplefilter("ignore", DataWarning)
        return dataclasses.replace(dataset, y_train=unit[dataset.y_train],
                                   y_test=unit[dataset.y_test], classes=tuple(saved))


def is_number(text):
    """Whether a class name is a number (svmlight and IDX labels; mlbench's are names)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encode_labels(*ys):
    """Map labels to 0..k-1 by the sorted union of all ``ys``; returns (codes..., classes)."""
    values = np.unique(np.concatenate(ys))
    classes = tuple(int(v) if float(v).is_integer() else float(v) for v in values)
    return tuple(np.searchsorted(values, y).astype(np.int64) for y in ys) + (classes,)


def _stratified_split(y, test_fraction, seed):
    """Sorted (train, test) row indices. The test part has round(test_fraction * l) rows, shared
    among the classes in proportion to their sizes (largest remainders get the leftover rows,
    ties to the smaller label); rows are drawn at random within each class.
    ``np.random.RandomState`` is used because its stream is frozen across numpy versions, so a
    seed always gives the same split."""
    classes, counts = np.unique(y, return_counts=True)
    quota = test_fraction * counts
    n_test = np.floor(quota).astype(np.int64)
    leftover = int(np.floor(test_fraction * y.shape[0] + 0.5)) - n_test.sum()
    n_test[np.argsort(-(quota - n_test), kind="stable")[:leftover]] += 1
    rng = np.random.RandomState(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:t]
                           for c, t in zip(classes, n_test)])
    test = np.sort(test.astype(np.int64))
    return np.setdiff1d(np.arange(y.shape[0]), test), test


def _split_rows(y, source, seed):
    """(train rows, test rows): the seeded, stratified 80/20 split of labels ``y``."""
    train, test = _stratified_split(y, 0.2, seed)
    if train.size == 0 or test.size == 0:
        raise DataError(f"{source}: {y.shape[0]} samples are too few for an 80/20 split")
    return train, test


def _split_dataset(name, X, y, classes, source, seed):
    train, test = _split_rows(y, source, seed)
    return Dataset(name, X[train], y[train], X[test], y[test], classes, source)


def _load_digits(seed):
    X, target = _bundled_digits()
    y, classes = _encode_labels(target)
    return _split_dataset("digits", X / 16.0, y, classes, "scikit-learn bundled digits", seed)


def _bundled_digits():
    """(X (1797, 64) float64 pixel counts 0..16, target (1797,) int): the file scikit-learn
    ships, read as ``sklearn.datasets.load_digits`` reads it, without importing scikit-learn
    (about a second per process, paid by every rank of every digits run); through
    ``load_digits`` where the file is not where this scikit-learn keeps it."""
    import importlib.util
    spec = importlib.util.find_spec("sklearn")          # finds the package, runs none of it
    path = spec and spec.origin and os.path.join(os.path.dirname(spec.origin), "datasets",
                                                 "data", "digits.csv.gz")
    if not (path and os.path.isfile(path)):
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return bunch.data, bunch.target
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


# --------------------------------------------------------------------------- IDX (MNIST format)

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, bottom of page)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_maybe_gzip(path) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic 1f 8b."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from e
    return raw


def _idx_header(path, raw):
    """(dtype, dims, header size) of an IDX file from its first bytes ``raw``; DataError if
    they are no IDX header."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty file)'}; "
                        "expected 00 00, a type code in "
                        f"{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}, the number of dimensions")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions need {header} bytes, "
                        f"file has {len(raw)})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    return dtype, dims, header


def _check_idx_size(path, dtype, dims, have):
    """DataError unless ``have`` bytes of data are exactly what ``dims`` need."""
    need = int(np.prod(dims, dtype=object)) * dtype.itemsize  # no overflow on absurd headers
    if have < need:
        raise DataError(f"{path}: truncated IDX data: dimensions {dims} need {need} bytes, "
                        f"file has {have}")
    if have > need:
        raise DataError(f"{path}: {have - need} bytes of trailing garbage after the IDX data "
                        f"(dimensions {dims})")


def load_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of its shape and (native) type.

    Layout: two zero bytes, a type code (see ``_IDX_DTYPES``), the number of dimensions ``d``,
    ``d`` big-endian uint32 sizes, then the data, big-endian, C order, nothing after it."""
    raw = _read_maybe_gzip(path)
    dtype, dims, header = _idx_header(path, raw)
    _check_idx_size(path, dtype, dims, len(raw) - header)
    data = np.frombuffer(raw, dtype, count=int(np.prod(dims)), offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class IdxImages:
    """An IDX file of unsigned-byte images (n, rows, cols), header read and checked, data
    not yet read: ``columns`` reads pixel columns without holding the rest."""
    path: Path
    dims: tuple
    header: int
    gz: bool

    @property
    def width(self):
        return self.dims[1] * self.dims[2]

    def _open(self):
        return gzip.open(self.path, "rb") if self.gz else open(self.path, "rb")

    def columns(self, features, n=None, chunk=1 << 22, dtype="float64"):
        """X[:n, features] / 255 (``dtype``, (n, |features|); float32: the float64 quotient
        rounded) of the images flattened to rows, read in chunks of about ``chunk`` bytes (a
        gzipped file decompressed as it streams)."""
        n = self.dims[0] if n is None else n
        out = np.empty((n, len(features)), dtype=dtype)
        step = max(1, chunk // self.width)
        try:
            with self._open() as f:
                f.read(self.header)
                for k in range(0, n, step):
                    rows = min(step, n - k)
                    raw = f.read(rows * self.width)
                    if len(raw) < rows * self.width:
                        _check_idx_size(self.path, np.dtype("u1"), self.dims,
                                        k * self.width + len(raw))
                    block = np.frombuffer(raw, np.uint8).reshape(rows, self.width)
                    out[k:k + rows] = block[:, features.start:features.stop] / 255.0
                if n == self.dims[0] and self.gz:
                    extra = sum(len(b) for b in iter(lambda: f.read(1 << 20), b""))
                    _check_idx_size(self.path, np.dtype("u1"), self.dims,
                                    n * self.width + extra)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.path}: corrupt gzip data ({e})") from e
        return out


def open_idx_images(path):
    """The ``IdxImages`` of ``path``: header and (plain file) size checked, no pixel read."""
    gz = False
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            raw = f.read(4)
            raw += f.read(4 * raw[3]) if len(raw) == 4 else b""
    except (OSError, EOFError, zlib.error) as e:
        what = "corrupt gzip data" if gz else "cannot read"
        raise DataError(f"{path}: {what} ({getattr(e, 'strerror', None) or e})") from e
    dtype, dims, header = _idx_header(path, raw)
    if len(dims) != 3 or dtype != np.uint8:
        raise DataError(f"{path}: expected unsigned-byte images (n, rows, cols), "
                        f"got {dtype.newbyteorder('=')} {dims}")
    if not gz:
        _check_idx_size(path, dtype, dims, Path(path).stat().st_size - header)
    return IdxImages(Path(path), dims, header, gz)


IDX_SUFFIXES, LIBSVM_SUFFIXES = ("", ".gz"), ("", ".bz2", ".gz")   # each file plain or packed


def _find_file(directory, base, suffixes, hint):
    """``directory/base + suffix`` for the first suffix that exists (a DataWarning if another
    one exists too: it is not read), else DataError."""
    found = [Path(directory) / (base + s) for s in suffixes if (Path(directory) / (base + s)).is_file()]
    if len(found) > 1:
        warn(f"{directory}: {' and '.join(f.name for f in found)} are both there; reading "
             f"{found[0].name} (the other is not read)", DataWarning)
    if found:
        return found[0]
    names = " or ".join(base + s for s in suffixes)
    raise DataError(f"{directory}: missing {names}. {hint}")


def _open_idx_dir(name, directory):
    """The Source of an IDX data set: labels read, images opened (``IdxImages``)."""
    hint = (f"The '{name}' data set needs the IDX files {', '.join(_IDX_FILES)} (each may be "
            "gzipped, .gz) in one directory")
    hint += (f"; on Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts them in "
             f"{FASHION_MNIST_DIR}, or get them from {ZALANDO_URL}." if name == "fashion-mnist"
             else "; see data/README.md.")
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: {_no_directory(directory)}. {hint}")
    files = [_find_file(directory, base, IDX_SUFFIXES, hint) for base in _IDX_FILES]
    parts = []
    for images_path, labels_path in (files[:2], files[2:]):
        images, labels = open_idx_images(images_path), load_idx(labels_path)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{labels_path}: expected integer labels (n,), "
                            f"got {labels.dtype} {labels.shape}")
        if images.dims[0] != labels.shape[0]:
            raise DataError(f"{images_path} has {images.dims[0]} images but {labels_path} has "
                            f"{labels.shape[0]} labels")
        if images.dims[0] == 0:
            raise DataError(f"{images_path}: no images")
        if (outside := np.flatnonzero(labels > 9)).size:          # a damaged or foreign file
            raise DataError(f"{labels_path}: item {outside[0]} (from 0) has the label "
                            f"{labels[outside[0]]}, {outside.size} in all are not among "
                            f"the classes 0-9 of '{name}'")
        parts.append((images, labels))
    (train, y_train), (test, y_test) = parts
    if train.width != test.width:
        raise DataError(f"{files[0]} and {files[2]}: images of different sizes")
    y_train, y_test, classes = _encode_labels(y_train, y_test)
    return Source(name, classes, y_train, y_test, train.width, str(directory),
                  images={"train": train, "test": test})


# --------------------------------------------------------------------------- svmlight / LIBSVM

# The LIBSVM sets: (train, test) paths relative to LIBSVM_URL, as served there. download_libsvm
# fetches exactly these; the directory loader looks for each one's base name (no folder, no .bz2),
# plain, .bz2 or .gz. The SHA-256 sums could not be obtained where this was written (no network):
# download_libsvm records the sum it sees first in CACHE_DIR/SHA256SUMS (trust on first use).
LIBSVM_FILES = {
    "letter-libsvm": ("letter.scale", "letter.scale.t"),
    "satimage-libsvm": ("satimage.scale", "satimage.scale.t"),
    "pendigits": ("pendigits", "pendigits.t"),
    "usps": ("usps.bz2", "usps.t.bz2"),
    "sensit-vehicle": ("vehicle/combined_scale.bz2", "vehicle/combined_scale.t.bz2"),
    "mnist-libsvm": ("mnist.scale.bz2", "mnist.scale.t.bz2"),
}
_MAX_DENSE = 2 ** 31  # elements (16 GiB of float64): refuse to densify anything larger


def _open_binary(path):
    """Open as load_svmlight_file does: by suffix, .gz and .bz2 are decompressed."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")    # in no text file (tabs and line ends are)


def _short(token: bytes) -> str:
    text = token.decode("utf-8", "replace")
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _line_problem(line: bytes):
    """What is wrong with one svmlight line (None if nothing): ``LABEL [qid:Q] I:V ... [# c]``,
    indices non-negative integers in increasing order, label and values numbers."""
    data = line.split(b"#", 1)[0]                  # a comment may hold any text
    try:
        binary = _CONTROL.search(data.decode("utf-8")) is not None
    except UnicodeDecodeError:
        binary = True
    if binary:
        return "binary bytes, not svmlight text (an image, an archive or a compressed file?)"
    tokens = data.split()
    if not tokens:
        return None
    try:
        float(tokens[0])
    except ValueError:
        return f"label {_short(tokens[0])} is not a number"
    features = tokens[1:]
    if features and features[0].startswith(b"qid:"):
        features = features[1:]
    previous = -1
    for token in features:
        index, colon, value = token.partition(b":")
        if not colon:
            return f"feature {_short(token)} is not of the form index:value"
        try:
            i = int(index)
        except ValueError:
            return f"feature index {_short(index)} is not an integer"
        if i < 0 or i >= 2 ** 31:
            return f"feature index {i} is out of range"
        if i <= previous:
            return f"feature indices must be increasing and unique ({i} after {previous})"
        try:
            float(value)
        except ValueError:
            return f"feature value {_short(value)} of index {i} is not a number"
        previous = i
    return None


def _first_bad_line(path):
    """'FILE:LINE: problem' for the first malformed line, or None. Only run after sklearn failed:
    its messages do not say where."""
    with _open_binary(path) as f:
        for lineno, line in enumerate(f, 1):
            problem = _line_problem(line)
            if problem:
                return f"{path}:{lineno}: {problem}"
    return None


def _rows_of(X, nonzeros):
    """The samples (rows of the csr matrix X) of the nonzeros at positions ``nonzeros`` of
    ``X.data``."""
    return np.searchsorted(X.indptr, nonzeros, "right") - 1


def _line_of_row(path, row):
    """1-based line number of sample ``row`` (comment and blank lines hold no sample)."""
    with _open_binary(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.split(b"#", 1)[0].strip():
                if row == 0:
                    return lineno
                row -= 1
    return "?"


# Bytes at the peak of reading svmlight files and making their Source, at most, per nonzero and
# per line (measured with tracemalloc, scikit-learn loaded: 20-33 a nonzero with many on a line,
# the most where one file is split into train and test; about 60 a line with a label alone).
NONZERO_BYTES, LINE_BYTES = 40, 80


def _spaces(path):
    """Where a name starts or ends with white space, which a message does not show: says so."""
    name = str(path)
    return f" (its name {name!r} starts or ends with a space)" if name != name.strip() else ""


def _load_reader(paths):
    """scikit-learn's ``load_svmlight_file``; DataError if its libraries cannot be loaded (an
    address-space limit too small for them: it fails in the dynamic loader)."""
    try:
        from sklearn.datasets import load_svmlight_file
    except (ImportError, OSError, MemoryError, SystemError) as e:
        from .memory import available_bytes
        why = available_bytes()[1]
        raise DataError(f"{paths[0]}: cannot load scikit-learn's svmlight reader ({e})"
                        + (f"; it runs under an {why.split(' (')[0]}: raise it"
                           if why.startswith("address-space") else "")) from None
    return load_svmlight_file


def _check_reading_fits(paths):
    """DataError, before any file is read, if reading the svmlight ``paths`` and making their
    Source would not fit the memory this process has (``memory.available_bytes``, with
    scikit-learn loaded; every rank reads every file): NONZERO_BYTES a nonzero and LINE_BYTES
    a line, a file having at most as many nonzeros as colons and as many lines as line ends
    and one, counted 4 MiB at a time; not counted when the sizes of uncompressed files show
    that all fits. A compressed file is decompressed for the count, and again to be read."""
    from .memory import available_bytes, local_ranks, refusal
    have, why = available_bytes(local_ranks())
    if have is None or not any(str(p).endswith((".gz", ".bz2")) for p in paths) and \
            LINE_BYTES * sum(Path(p).stat().st_size + 1 for p in paths) <= have:
        return
    nonzeros, lines = 0, len(paths)
    for path in paths:
        try:
            with _open_binary(path) as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    nonzeros, lines = nonzeros + chunk.count(b":"), lines + chunk.count(b"\n")
        except (OSError, EOFError, zlib.error):
            return                                          # the reader says what is wrong
    need = {"nonzeros": NONZERO_BYTES * nonzeros, "lines": LINE_BYTES * lines}
    line = refusal(dict(need, total=sum(need.values())), have, why,
                   f"reading {','.join(map(str, paths))} (at most {nonzeros:,} nonzeros, "
                   f"{NONZERO_BYTES} bytes each, and {lines:,} lines, {LINE_BYTES} bytes each)",
                   "every rank reads every file: start fewer ranks on this machine, or use one "
                   "with more memory" if local_ranks() > 1 else "use a machine with more memory")
    if line:
        raise DataError(line)


def _read_svmlight(path, load_svmlight_file):
    """(csr X with raw indices as columns, float y) of one file, checked; DataError otherwise."""
    try:
        X, y = load_svmlight_file(str(path), zero_based=True, dtype=np.float64)
    except (ValueError, OverflowError) as e:
        with open(path, "rb") as f:
            if f.read(2) == b"\x1f\x8b" and not str(path).endswith(".gz"):
                raise DataError(f"{path}: gzip-compressed, but its name does not end in .gz "
                                "(which is how it is read unpacked): rename it or gunzip it"
                                ) from None
        try:
            where = _first_bad_line(path)
        except (OSError, EOFError, zlib.error):
            where = None
        raise DataError(where or f"{path}: cannot parse as svmlight/LIBSVM ({e})") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if X.shape[0] == 0:
        raise DataError(f"{path}: no samples")
    X = X.tocsr()
    bad_labels = np.flatnonzero(~np.isfinite(y))
    if bad_labels.size:
        raise DataError(f"{path}:{_line_of_row(path, bad_labels[0])}: label is not finite")
    bad_labels = np.flatnonzero(np.abs(y) >= 2.0 ** 53)    # floats: 2^53 + 1 reads as 2^53
    if bad_labels.size:
        raise DataError(f"{path}:{_line_of_row(path, bad_labels[0])}: label {y[bad_labels[0]]:.17g} "
                        "is too large to be told apart from its neighbours (labels are read as "
                        "floating point numbers: keep them below 2^53)")
    bad_labels = np.flatnonzero(y != np.round(y))
    if bad_labels.size:
        raise DataError(f"{path}:{_line_of_row(path, bad_labels[0])}: label {y[bad_labels[0]]:g} "
                        "is not an integer: the kit classifies, a label names a class")
    bad = np.flatnonzero(~np.isfinite(X.data))
    if bad.size:
        row = int(_rows_of(X, bad[0]))
        raise DataError(f"{path}:{_line_of_row(path, row)}: non-finite feature value "
                        f"({X.data[bad[0]]}) in sample {row}")
    return X, y


STRAY_GAP = 100    # a feature index this far above all others, and twice them, is suspect
STRAY_MAX = 10     # the most such indices looked for (each a pass over the nonzeros)


def _svmlight_width(paths, parts, n_features):
    """(index shift, width) of the dense matrices, DataError if a file's indices do not fit.

    svmlight files are sparse: a file's width is its largest index, and a test file narrower
    than the training file just leaves the last features out. A test file with indices beyond
    the training file's uses features the model is never trained on: an error, unless an
    explicit ``n_features`` covers both files."""
    zero = [bool(X.nnz) and X.indices.min() == 0 for X, _ in parts]
    if len(parts) == 2 and zero[1] and not zero[0]:
        raise DataError(f"{paths[1]} uses feature index 0 and {paths[0]} never does: the test "
                        "file numbers features from 0 and the training file from 1 (LIBSVM's "
                        "way), or the test file has a feature the model never trains on; if "
                        f"both number from 0, write 0:0 on a line of {paths[0]}")
    shift = 0 if any(zero) else 1
    widths = [int(X.indices.max()) + 1 - shift if X.nnz else 0 for X, _ in parts]
    if n_features is not None:
        if int(n_features) < 1:
            raise DataError(f"n_features must be positive, got {n_features}")
        for p, w in zip(paths, widths):
            if w > n_features:
                raise DataError(f"{p}: needs {w} features but n_features is {n_features}")
        return shift, int(n_features)
    if len(widths) == 2 and widths[1] > widths[0]:
        X = parts[1][0]
        first = np.flatnonzero(X.indices >= widths[0] + shift)[0]
        line = _line_of_row(paths[1], int(_rows_of(X, first)))
        raise DataError(f"{paths[0]} has at most {widths[0]} features, {paths[1]} has "
                        f"{widths[1]} ({paths[1]}:{line} uses index {X.indices[first]} first): the "
                        "test file uses feature indices the training file never does (a typo, "
                        "or a train/test pair of different data sets?); if both "
                        f"really have {widths[1]}, write {widths[1] - 1 + shift}:0 on a line of the training "
                        f"file (from Python: load_svmlight_pair(..., n_features={widths[1]}))"
                        + (f"; or {paths[1]} numbers features from 1 (LIBSVM's way) and "
                           f"{paths[0]}, which uses index 0, from 0" if zero[0] else ""))
    if widths[0] == 0:
        raise DataError(f"{', '.join(map(str, paths))}: no features at all")
    return shift, widths[0]


def _warn_stray_index(paths, parts, shift):
    """DataWarning naming the lines of the feature indices that stand far above all the
    others (typos such as 100000:1 among indices up to 64): each of the largest few indices,
    down to one more than twice, and at least ``STRAY_GAP`` more than, the next index the
    files use. They alone set the network's input width, and the first layer's weights grow
    with it. An explicit zero at the largest index (``N:0``) is how a file states its width:
    no warning."""
    used = [(p, X) for p, (X, _) in zip(paths, parts) if X.nnz]
    if not used:
        return
    tops = [max(int(X.indices.max()) for _, X in used)]
    if any(((X.indices == tops[0]) & (X.data == 0)).any() for _, X in used):
        return                                    # N:0: the width is meant
    width = lambda i: i + 1 - shift
    while len(tops) <= STRAY_MAX:                 # down the distinct indices, largest first
        below = max(int(np.max(X.indices, where=X.indices < tops[-1], initial=-1))
                    for _, X in used)
        if below < 0:
            return
        if width(tops[-1]) > 2 * width(below) and tops[-1] - below >= STRAY_GAP:
            break                                 # ``below`` is the data's own width
        tops.append(below)
    else:
        return
    where = []
    for top in tops:
        path, X = next((p, X) for p, X in used if (X.indices == top).any())
        row = int(_rows_of(X, np.flatnonzero(X.indices == top)[0]))
        where.append((top, f"{path}:{_line_of_row(path, row)}"))
    wide = f"the input {width(tops[0])} features wide instead of {width(below)}"
    if len(where) == 1:
        line = (f"{where[0][1]}: feature index {tops[0]} is more than twice any other the data "
                f"uses ({below}): it alone makes {wide}; if it is a typo, correct that line")
    else:
        line = (f"feature indices {', '.join(f'{i} ({at})' for i, at in where)} are more "
                f"than twice any other the data uses ({below}): they alone make {wide}; if "
                "they are typos, correct those lines")
    warn(line, DataWarning)


RARE_ZERO = 0.01   # index 0 on fewer than this share of the samples: a typo in a 1-based file?


def _warn_rare_zero(paths, parts, width):
    """DataWarning naming the first line that uses feature index 0 where fewer than
    ``RARE_ZERO`` of the samples do: that one index makes the kit read the files as numbered
    from 0, and a 1-based file (LIBSVM's way) with one such typo quietly grows by a feature.
    An explicit zero at index 0 (``0:0``) states that the files number from 0: no warning."""
    zero = [X.indices == 0 for X, _ in parts]
    if any((X.data[z] == 0).any() for (X, _), z in zip(parts, zero)):
        return                                    # 0:0 says the files number from 0
    rows = [np.unique(_rows_of(X, np.flatnonzero(z)))
            for (X, _), z in zip(parts, zero)]
    used, total = sum(r.size for r in rows), sum(X.shape[0] for X, _ in parts)
    if 0 < used < RARE_ZERO * total:
        path, first = next((p, r[0]) for p, r in zip(paths, rows) if r.size)
        warn(f"{path}:{_line_of_row(path, int(first))}: feature index 0, used by {used} of "
             f"{total} samples, makes the kit number the features from 0 ({width} features); "
             "if the file numbers them from 1, as LIBSVM's files do, correct that line; if "
             "from 0, write 0:0 on a line to say so", DataWarning)


def load_svmlight_pair(train_path, test_path=None, n_features=None, seed=0) -> Dataset:
    """Dense Dataset from svmlight/LIBSVM file(s) (plain, .gz or .bz2).

    Indices are one-based (LIBSVM) unless the train file uses index 0, then zero-based for both
    (DataError if only the test file uses it: the files number differently). The
    width is ``n_features`` if given (DataError if a file has a larger index), else the largest
    index in the train file (DataError if the test file has a larger one). Labels map to 0..k-1
    by the sorted union of train and test labels. Without ``test_path`` the train file is split
    80/20, stratified, seeded by ``seed``. Without ``n_features``, a largest index far above
    every other gives a DataWarning naming its line (``_warn_stray_index``)."""
    source = str(train_path) if test_path is None else f"{train_path},{test_path}"
    return _svmlight_dataset("svmlight", source, train_path, test_path, n_features, seed)


def _svmlight_dataset(name, source, train_path, test_path=None, n_features=None, seed=0):
    """load_svmlight_pair, with the Dataset's ``name`` and ``source`` given."""
    return _svmlight_source(name, source, train_path, test_path, n_features, seed).load()


def _svmlight_source(name, source, train_path, test_path=None, n_features=None, seed=0):
    """The Source of svmlight file(s): the features kept sparse (the matrices scikit-learn's
    reader returns, zero-based, as wide as the data set), so that a rank makes only its own
    columns dense (``Source.share``); see load_svmlight_pair."""
    paths = [Path(train_path)] + ([Path(test_path)] if test_path is not None else [])
    for path in paths:
        if not path.is_file():                        # before scikit-learn's 2 s import
            raise DataError(f"{path}: " + ("a directory, not an svmlight file" if path.is_dir()
                                           else "no such file" + _spaces(path)))
    reader = _load_reader(paths)
    _check_reading_fits(paths)                        # with scikit-learn's memory in use
    parts = [_read_svmlight(p, reader) for p in paths]
    shift, width = _svmlight_width(paths, parts, n_features)
    if n_features is None:
        _warn_stray_index(paths, parts, shift)
    if shift == 0:
        _warn_rare_zero(paths, parts, width)
    for M, _ in parts:
        M.indices -= shift                            # in place: no copy of the indices
    X = [type(M)((M.data, M.indices, M.indptr), shape=(M.shape[0], width)) for M, _ in parts]
    *codes, classes = _encode_labels(*(y for _, y in parts))
    if test_path is None:
        train, test = _split_rows(codes[0], source, seed)
        X, codes = [X[0][train], X[0][test]], [codes[0][train], codes[0][test]]
    return Source(name, classes, codes[0], codes[1], width, source, sparse=tuple(X))


def _libsvm_local_names(name):
    """(train, test) base names of LIBSVM set ``name``: its LIBSVM_FILES paths without the folder
    and without .bz2 (the loader tries plain, .bz2 and .gz)."""
    return tuple(path.rsplit("/", 1)[-1].removesuffix(".bz2") for path in LIBSVM_FILES[name])


def _load_libsvm_dir(name, directory):
    """A named LIBSVM set from ``directory`` (None: the download cache, if it is there)."""
    train, test = _libsvm_local_names(name)
    hint = (f"The '{name}' data set needs {train} and {test} (plain, .bz2 or .gz) from "
            f"{LIBSVM_URL} in one directory; download_libsvm({name!r}) fetches them into "
            f"{CACHE_DIR}/{name} (see data/README.md).")
    if directory is None:
        directory = Path(CACHE_DIR) / name
        if not directory.is_dir():
            raise DataError(f"no path given for '{name}' and no {directory}. {hint}")
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: {_no_directory(directory)}. {hint}")
    found = [_find_file(directory, base, LIBSVM_SUFFIXES, hint) for base in (train, test)]
    return _svmlight_source(name, str(directory), *found)


# --------------------------------------------------------------------------- Statlog sets (R data)

# The Statlog sets as the R package mlbench ships them (Debian: r-cran-mlbench): R data files, read
# with the pure-Python package rdata (R is never started). Each file holds one data frame: the
# feature columns and a factor class column, the rows of the Statlog training file first, then
# those of its test file (data/README.md: what was checked, and against what).
MLBENCH_DIRS = ("/usr/lib/R/site-library/mlbench/data", "/usr/local/lib/R/site-library/mlbench/data")
MLBENCH_INSTALL = "apt-get install --no-install-recommends r-cran-mlbench"


@dataclass(frozen=True)
class StatlogFile:
    """A Statlog set in mlbench: its file, the data frame in it, the class column (an R factor),
    the standard split, the first ``n_train`` rows train and the last ``n_test`` test, the
    test accuracy of the RBF-kernel SVM on that split (Hsu and Lin, IEEE TNN 2002: the anchor
    the reproduction compares with, data/README.md), and how its features are scaled from the
    training rows: "minmax" (:func:`svm_scale`, as LIBSVM's files) or "standard"
    (:func:`standardize`)."""

    file: str
    frame: str
    label: str
    n_train: int
    n_test: int
    n_features: int
    svm_accuracy: float | None = None
    binary: bool = False  # 0/1 indicators (R factors in DNA.rda): kept as 0/1, not rescaled
    scaling: str = "minmax"


STATLOG_FILES = {
    "satimage": StatlogFile("Satellite.rda", "Satellite", "classes", 4435, 2000, 36, 0.9170),
    "letter": StatlogFile("LetterRecognition.rda", "LetterRecognition", "lettr", 15000, 5000, 16,
                          0.9798, scaling="standard"),
    "shuttle": StatlogFile("Shuttle.rda", "Shuttle", "Class", 43500, 14500, 9, 0.9992,
                           scaling="standard"),
    "dna": StatlogFile("DNA.rda", "DNA", "Class", 2000, 1186, 180, 0.9545, binary=True),
}


def svm_scale(X_train, *others, lower=-1.0, upper=1.0):
    """Scale every feature linearly to [lower, upper] by its minimum and maximum over ``X_train``,
    as LIBSVM's ``svm-scale`` makes the ``.scale`` files (the test part gets the training ranges,
    ``svm-scale -r``, so it may fall outside). A feature constant in training maps to 0 in every
    part (``svm-scale`` writes no value for it). Returns the scaled ``X_train, *others``."""
    X_train = np.asarray(X_train, dtype=np.float64)
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)

    def scale(X):
        X = np.asarray(X, dtype=np.float64)
        return np.where(hi > lo, lower + (upper - lower) * (X - lo) / width, 0.0)
    return (scale(X_train),) + tuple(scale(X) for X in others)


def standardize(X_train, *others):
    """Subtract each feature's mean over ``X_train`` and divide by its standard deviation there
    (the other parts get the training statistics); a feature constant in training maps to 0.
    Returns the scaled ``X_train, *others``."""
    X_train = np.asarray(X_train, dtype=np.float64)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)

    def scale(X):
        X = np.asarray(X, dtype=np.float64)
        return np.where(std > 0, (X - mean) / np.where(std > 0, std, 1.0), 0.0)
    return (scale(X_train),) + tuple(scale(X) for X in others)


SCALINGS = {"minmax": svm_scale, "standard": standardize}


def _statlog_hint(name):
    spec = STATLOG_FILES[name]
    twin = f" (LIBSVM's {name} files: '{name}-libsvm')" if f"{name}-libsvm" in LIBSVM_FILES else ""
    return (f"The '{name}' data set{twin} reads {spec.file} of the R package mlbench: install it "
            f"with `{MLBENCH_INSTALL}` (Debian/Ubuntu; R is never started), or give path= "
            f"(--data-path) a directory holding {spec.file}, or the file itself; see data/README.md.")


def _find_statlog_file(name, path):
    """The .rda file of Statlog set ``name``: ``path`` (a directory holding it, or the file), or
    with no path the first of MLBENCH_DIRS that holds it; DataError, one line, otherwise."""
    spec = STATLOG_FILES[name]
    if path is None:
        for directory in MLBENCH_DIRS:
            if (Path(directory) / spec.file).is_file():
                return Path(directory) / spec.file
        raise DataError(f"no {spec.file} in {' or '.join(MLBENCH_DIRS)}. {_statlog_hint(name)}")
    path = Path(path)
    if path.is_dir():
        if not (path / spec.file).is_file():
            raise DataError(f"{path}: no {spec.file} in this directory. {_statlog_hint(name)}")
        return path / spec.file
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory. {_statlog_hint(name)}")
    return path


def _read_rda_frame(path, spec):
    """The data frame ``spec.frame`` of an R data file (or its only object), read by rdata."""
    try:
        import rdata
    except ImportError as e:
        raise DataError(f"{path}: reading R data files needs the Python package rdata "
                        "(pip install rdata)") from e
    try:
        with warnings.catch_warnings():
            # rdata's guesses: mlbench's files (R format 2) name no text encoding (their strings
            # are ASCII); a file that is no .rda is tried as .rds. What it reads is checked below.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"rdata(\.|$)")
            objects = rdata.read_rda(str(path))
    except MemoryError:
        raise DataError(f"{path}: not enough memory to read it (a limit on this process's "
                        "memory, such as ulimit -v or prlimit --as?)") from None
    except Exception as e:  # rdata's parser raises EOFError, ValueError, lzma/zlib errors, ...
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot read as an R data file, truncated or corrupt? "
                        f"({detail})") from e
    sets = {f.frame: name for name, f in STATLOG_FILES.items()}
    other = [sets.get(str(k)) for k in objects]
    only = next(iter(objects.values())) if len(objects) == 1 and not other[0] else None
    frame = objects.get(spec.frame, only)
    if not hasattr(frame, "columns"):
        raise DataError(f"{path}: no data frame '{spec.frame}' in the file (it holds: "
                        f"{', '.join(map(str, objects)) or 'nothing'})"
                        + (f": the file of the '{other[0]}' set, not of the one asked for"
                           if len(other) == 1 and other[0] else ""))
    return frame


def _abbreviate(names, keep=6):
    names = [repr(str(n)) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > keep else ""
    return ", ".join(names[:keep]) + more


def _feature_values(path, name, column, binary):
    """One feature column as float64 (NaN where R has NA). Numbers, or for ``binary`` sets also
    factors with levels '0' and '1' (DNA.rda's indicators)."""
    if hasattr(column, "cat"):
        levels = [str(v) for v in column.cat.categories]
        if not (binary and set(levels) <= {"0", "1"}):
            raise DataError(f"{path}: feature column '{name}' is a factor (levels "
                            f"{_abbreviate(levels, 4)}); expected numbers")
        codes = column.cat.codes.to_numpy()
        return np.array([float(v) for v in levels] + [np.nan])[codes]  # code -1 (NA) -> NaN
    if column.dtype.kind not in "biuf":
        raise DataError(f"{path}: feature column '{name}' holds {column.dtype}, not numbers")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _statlog_arrays(path, frame, spec):
    """(X (l, n_features) float64, class codes (l,), factor levels) of the frame, checked."""
    columns = list(frame.columns)
    if spec.label not in columns:
        raise DataError(f"{path}: no class column '{spec.label}' (columns: {_abbreviate(columns)})")
    features = [c for c in columns if c != spec.label]
    if len(features) != spec.n_features:
        raise DataError(f"{path}: {len(features)} feature columns besides '{spec.label}', "
                        f"expected {spec.n_features} ({_abbreviate(features)})")
    label = frame[spec.label]
    if not hasattr(label, "cat"):
        raise DataError(f"{path}: class column '{spec.label}' is not a factor ({label.dtype})")
    codes = label.cat.codes.to_numpy().astype(np.int64)
    if (codes < 0).any():
        raise DataError(f"{path}: missing class (NA) in row {np.flatnonzero(codes < 0)[0] + 1}")
    X = np.column_stack([_feature_values(path, c, frame[c], spec.binary) for c in features])
    bad = ~np.isfinite(X)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        col = int(np.flatnonzero(bad[row])[0])
        raise DataError(f"{path}: missing or non-finite value ({X[row, col]}) in feature column "
                        f"'{features[col]}', row {row + 1}")
    if spec.binary and not np.isin(X, (0.0, 1.0)).all():
        row, col = (int(i[0]) for i in np.nonzero(~np.isin(X, (0.0, 1.0))))
        raise DataError(f"{path}: value {X[row, col]} in feature column '{features[col]}', row "
                        f"{row + 1}; expected 0 or 1")
    return X, codes, [str(v) for v in label.cat.categories]


def _load_statlog(name, path):
    """Statlog set ``name`` with its standard split: features scaled from the training rows
    as its ``StatlogFile.scaling`` says (binary sets as they are); class c is the c-th factor
    level that occurs, so the classes keep the order of the Statlog codes (data/README.md)."""
    spec = STATLOG_FILES[name]
    file = _find_statlog_file(name, path)
    frame = _read_rda_frame(file, spec)
    need = spec.n_train + spec.n_test
    if len(frame) != need:
        problem = "too few" if len(frame) < need else "too many"
        raise DataError(f"{file}: {len(frame)} rows, {problem} for the standard split of '{name}' "
                        f"(the first {spec.n_train} rows train, the last {spec.n_test} test)")
    X, codes, levels = _statlog_arrays(file, frame, spec)
    used = np.unique(codes)
    y = np.searchsorted(used, codes)
    X_train, X_test = X[:spec.n_train], X[spec.n_train:]
    if not spec.binary:
        X_train, X_test = SCALINGS[spec.scaling](X_train, X_test)
    return Dataset(name, X_train, y[:spec.n_train], X_test, y[spec.n_train:],
                   tuple(levels[c] for c in used), str(file))


# --------------------------------------------------------------------------- the one entry point

def load_dataset(name: str, path: str | None = None, seed: int = 0) -> Dataset:
    """Load data set ``name`` (a key of DATASETS) from ``path``; see the module docstring.
    ``seed`` fixes the train/test split where this module makes one (digits, svmlight)."""
    return open_dataset(name, path, seed).load()


def _no_directory(path):
    return "not a directory" if Path(path).exists() else "no such directory"


def open_dataset(name: str, path: str | None = None, seed: int = 0) -> Source:
    """Open data set ``name``: its sizes and labels, the features still in their IDX files
    (Fashion-MNIST, MNIST), sparse (svmlight) or read whole (the others). ``.load()`` is
    ``load_dataset``; ``.share(features, labels)`` reads one rank's columns only."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name in ("fashion-mnist", "mnist"):
        if path is None and name == "fashion-mnist":
            path = FASHION_MNIST_DIR
        if path is None:
            raise DataError("the 'mnist' data set needs path=DIR holding the IDX files "
                            f"{', '.join(_IDX_FILES)} (each may be .gz), or is LIBSVM's copy "
                            "what you have ('mnist-libsvm')? See data/README.md")
        return _open_idx_dir(name, path)
    if name in BUNDLED:
        if path:
            raise DataError(f"the 'digits' data set is scikit-learn's bundled copy and reads no "
                            f"file (got path {path!r}): name the data set of the files "
                            f"({', '.join(d for d in DATASETS if d not in BUNDLED)})")
        whole = _load_digits(seed)
    elif name in STATLOG_FILES:
        whole = _load_statlog(name, path)
    elif name == "svmlight":
        if not path:
            raise DataError("the 'svmlight' data set needs path=TRAIN[,TEST] (svmlight/LIBSVM "
                            "files; without TEST a seeded 80/20 split of TRAIN)")
        train, comma, test = str(path).partition(",")
        if not train or "," in test or (comma and not test):        # "TRAIN," names no TEST
            raise DataError(f"the 'svmlight' data set needs path=TRAIN[,TEST], got {path!r}")
        return _svmlight_source("svmlight", str(path), train, test or None, seed=seed)
    else:
        return _load_libsvm_dir(name, path)
    return Source(whole.name, whole.classes, whole.y_train, whole.y_test, whole.n_features,
                  whole.source, dataset=whole)


def data_files(name, path=None):
    """The files that data set ``name`` at ``path`` may read, so that no output is written
    over one (``outputs.check_writable``): in a directory, every name the loader looks for,
    plain or compressed, whether it exists or not (an output there would be read next time)."""
    if name == "svmlight":
        return [p for p in str(path or "").split(",") if p]
    if name in STATLOG_FILES:
        try:
            return [_find_statlog_file(name, path)]
        except DataError:
            return []
    if name in ("fashion-mnist", "mnist") and (path or name == "fashion-mnist"):
        directory, bases, suffixes = path or FASHION_MNIST_DIR, _IDX_FILES, IDX_SUFFIXES
    elif name in LIBSVM_FILES:
        directory, bases = path or Path(CACHE_DIR) / name, _libsvm_local_names(name)
        suffixes = LIBSVM_SUFFIXES
    else:
        return []
    return [Path(directory) / (b + s) for b in bases for s in suffixes]


# --------------------------------------------------------------------------- opt-in downloader

def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sums(sums_path):
    """{relative path: sha256} from a ``sha256sum``-style file (missing file: empty)."""
    sums = {}
    if not sums_path.exists():
        return sums
    for lineno, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *")
        if len(digest) != 64 or not name:
            raise DataError(f"{sums_path}:{lineno}: not a 'SHA256  FILE' line")
        sums[name] = digest.lower()
    return sums


def _record_sum(sums_path, name, digest):
    """Add or confirm ``name``'s sum in SHA256SUMS, rewriting the file atomically."""
    sums = _read_sums(sums_path)
    sums[name] = digest
    tmp = sums_path.with_name(sums_path.name + ".tmp")
    tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    os.replace(tmp, sums_path)


def _publish(tmp, dest, digest):
    """Give the finished download ``tmp`` its name ``dest``, never replacing another file."""
    try:
        os.link(tmp, dest)  # atomic, and fails if dest appeared meanwhile
    except FileExistsError:
        if _sha256(dest) != digest:
            raise DataError(f"{dest}: exists with different content; not overwritten") from None
    except OSError:  # no hard links on this file system
        if dest.exists():
            raise DataError(f"{dest}: exists; not overwritten") from None
        os.replace(tmp, dest)


def _download(url, dest, recorded, sums_path):
    """Fetch ``url`` into a temporary file beside ``dest``, check it against the ``recorded``
    SHA-256 (None: nothing recorded yet) and give it the name ``dest``; returns its SHA-256."""
    # imported here, not by every rank (http, ssl and email with it: a few MB each)
    import urllib.request
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            except OSError as e:                  # urllib.error.URLError too
                raise DataError(f"{url}: download failed ({e})") from e
        digest = h.hexdigest()
        if recorded is not None and digest != recorded:
            raise DataError(f"{url}: downloaded SHA-256 {digest} differs from {recorded} "
                            f"recorded in {sums_path}; the download was deleted")
        _publish(Path(tmp), dest, digest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest


def download_libsvm(name, cache_dir=CACHE_DIR, base_url=None):
    """Fetch LIBSVM set ``name`` into ``cache_dir/name``; returns the (train, test) paths (str).

    Opt-in only: nothing else in this package downloads. Files already in the cache are not
    fetched again but are checked against the SHA-256 recorded in ``cache_dir/SHA256SUMS``. A
    download goes to a temporary file in the cache and gets its name atomically only once its
    sum matches the recorded one, or, with none recorded, once it has been recorded (trust on
    first use). ``base_url`` replaces LIBSVM_URL (tests use a ``file://`` or local http URL)."""
    if name not in LIBSVM_FILES:
        raise DataError(f"no LIBSVM files registered for {name!r}; known: "
                        f"{', '.join(LIBSVM_FILES)}")
    base = base_url or LIBSVM_URL
    base += "" if base.endswith("/") else "/"
    cache = Path(cache_dir)
    target = cache / name
    target.mkdir(parents=True, exist_ok=True)
    sums_path = cache / "SHA256SUMS"
    paths = []
    for remote in LIBSVM_FILES[name]:
        filename = remote.rsplit("/", 1)[-1]
        key, dest = f"{name}/{filename}", target / filename
        recorded = _read_sums(sums_path).get(key)
        if dest.exists():
            digest = _sha256(dest)
            if recorded is not None and digest != recorded:
                raise DataError(f"{dest}: SHA-256 {digest} differs from {recorded} recorded in "
                                f"{sums_path}; delete the file to download it again")
        else:
            digest = _download(base + remote, dest, recorded, sums_path)
        if recorded is None:
            _record_sum(sums_path, key, digest)
        paths.append(str(dest))
    return tuple(paths)

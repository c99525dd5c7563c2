"""The order in which ``make test`` hands test files to its workers (pytest-xdist, ``--dist
loadfile --no-loadscope-reorder``: a file to a worker, in collection order).

Longest files first, so that no worker is left alone with a long file at the end: by name,
test_browser.py (a minute) came last and kept one worker busy after the other had finished.
Measured on 2026-11-29 (2 workers): the files below took 305, 157, 112, 101, 90, 89, 79 and
59 s; every other file took under 45 s. The tests themselves are not reordered within a file.
"""
LONGEST_FIRST = ("test_notebooks.py", "test_checkpoint.py", "test_faults.py", "test_memory.py",
                 "test_cli.py", "test_mpi_cli.py", "test_guard.py", "test_browser.py")


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))      # stable

"""The reproduction study (``python -m dnewton_core reproduce``): the paper's claims,
measured over a grid of settings and seeds.

``settings.py`` what runs (the grid, budgets, the ``Plan``); ``runner.py`` runs it;
``records.py`` the CSV files of record; ``report.py`` the table, the claims and summary.md;
``provenance.py`` the machine and the command; ``figures.py`` the figures; ``modeled.py``
the times on modeled networks (``--network``); ``across.py`` the claims over several
studies, one table per claim. The claims, as
``report.claims`` measures them:

  1. diagonalization (block-diagonal G) removes the messages inside CG at little cost in
     progress: newton-diag against newton-full, bytes in phase "cg" and test accuracy;
  2. subsampling cuts the cost of the Gauss-Newton part: |S| = 5% against 20% of l;
  3. early CG termination (sync fraction tau < 1, diag only) cuts the waiting: the slowest
     rank's seconds in CG and the CG iterations per Newton iteration;
  4. Newton is more robust to its settings than SGD (with momentum) is to its learning rate,
     and may reach better test accuracy: final test accuracy across each method's settings.
"""

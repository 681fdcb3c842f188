"""The study's helpers: everything ``Fashion_mnist_model.ipynb`` calls besides the network and the data.

- ``config``: the settings of a full or a quick run of the notebook (at the bottom: it imports nothing of the study);
- ``runs``: what the searches share: a run's settings and their names, training one run, the parallel dispatcher,
  the CSV logs, and the one rule for which run is better (``solver.rank_key``);
- ``grid``: the grid search; ``halving``: successive halving over the same grid; ``beyond``: the notebook's
  section 7;
- ``metrics``: confusion matrix, per-class accuracy and the statistics of the hidden units;
- ``plots``: the figures; ``report``: ``log/results.json`` and the README's results (``python -m study.report``).

Importing the package imports none of them.
"""

"""Constrained surrogate optimiser per miner and the site power budget (see README.md).

Importing this package, or any module in it, never imports scikit-optimize or
scikit-learn: they load only inside a residual fit (``surrogate._fit_residual``), and
``worker.run_round_in_worker`` can keep them out of the daemon's process altogether.
"""

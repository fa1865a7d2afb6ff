"""Mappers: voxels (n, p) -> embedding targets (n, d).

Every mapper offers ``fit(X, Y) -> self``, ``predict(X) -> Y_hat``, ``save(path)`` and the
classmethod ``load(path)``; hyper-parameters are chosen on the training rows only.
``fmridecode.mappers.ridge.RidgeCV`` is the baseline.
"""

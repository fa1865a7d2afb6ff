"""Metrics: pure functions on arrays, each defined once (``retrieval``, ``identification``,
``image``, ``glm_recovery``); ``table.write_metrics`` is the only writer of metric rows."""

"""Test-session settings: one BLAS thread per test process (the machine has 2 cores, and
oversubscribed BLAS threads make small linear-algebra tests 10x slower)."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

"""The devices a test runs on: the CPU always, CUDA as well when torch sees a GPU.

Parametrising a test with ``DEVICES`` runs the same assertions on both, so the CUDA paths are
checked by the tests that check the CPU (on a GPU machine: ``pytest -k cuda``).
"""

import pytest
import torch

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
    "the same test runs on the CPU",
)

DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]

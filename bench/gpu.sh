#!/usr/bin/env bash
# The checks a machine with a CUDA GPU runs (measured on one H200: bench/README.md):
#   bash bench/gpu.sh [OUT] [PART...]    # logs go to OUT (default: bench/gpu-logs)
# PART (default: all three, about 9 minutes on an H200 with 16 cores):
#   tests   every test with a CUDA variant (mapper training and its exact resume, the GLM's
#           torch backend, ridge, the tiny / SD unCLIP / Versatile Diffusion generators: the
#           CPU's results on CUDA), `pytest -k cuda`, about 1 minute;
#   tokens  bench/ridge.py at NSD's shape on the GPU with 257 x 768 token targets: ours and
#           himalaya on torch_cuda, the per-token scikit-learn loop on the CPU (16 of 257
#           tokens timed), about 5 minutes;
#   single  the same shape with 768 targets, all five implementations, about 3 minutes.
set -uo pipefail
out=${1:-bench/gpu-logs}
shift || true
parts=${*:-tests tokens single}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$out/gpu.txt"
for part in $parts; do
    case $part in
    tests)
        timeout 170 python3 -m pytest -q -p no:cacheprovider -k cuda -rs \
            tests/test_zoo.py tests/test_training.py tests/test_glm_method.py \
            tests/test_ridge.py tests/test_generators.py tests/test_unclip.py \
            tests/test_versatile.py 2>&1 | tee "$out/pytest_cuda.log" ;;
    tokens)
        timeout 400 python3 bench/ridge.py --device cuda --child-timeout 120 \
            --only ours sklearn-loop himalaya-KernelRidgeCV himalaya-RidgeCV 2>&1 \
            | tee "$out/ridge_nsd_tokens.log" ;;
    single)
        timeout 240 python3 bench/ridge.py --device cuda --tokens 1 --child-timeout 80 2>&1 \
            | tee "$out/ridge_nsd_768.log" ;;
    *) echo "unknown part $part (tests, tokens, single)" >&2; exit 2 ;;
    esac
done

#!/usr/bin/env bash
# The GPU session's one device call (the project brief's "GPU sessions"; /work/.library/device/*.md).
#
# Here, first (costs no device time):   benchmarks/gpu_session.sh --prepare
#   builds .whl/ (ignored by git): seqcheck's own wheel and the one dependency the device image
#   lacks (pebble; numpy, scipy, hypothesis, ml_dtypes, mpmath, cloudpickle, torch, jax, numba,
#   numba-cuda, cupy, pytest, pytest-xdist and pytest-benchmark are there).
# Then one call of the device tool's run, carrying .whl:
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=420)
# It installs the wheels into /tmp/site, records the card, runs every GPU test (the registered
# GPU implementations on the GPU, the mutant kernels, the tests marked gpu) and the GPU benchmark,
# and leaves under $OUT: nvidia-smi.txt, pytest_gpu.log, gpu_bench.log, gpu_bench.json.
# The figures go to docs/performance.md with the device named.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    rm -rf .whl && mkdir .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl pebble==5.2.3 || exit 1
    .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl . || exit 1
    ls -l .whl
    exit 0
fi

: "${OUT:?run on the device machine, where OUT is set}"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import numba, numba.cuda, cupy, torch; print('numba', numba.__version__, 'cupy', cupy.__version__,
'torch', torch.__version__, 'gpu', numba.cuda.is_available(), torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/nvidia-smi.txt"

# the GPU tests: every registered implementation on the GPU, the mutant kernels, PTX, the tests marked gpu
timeout 240 python3 -m pytest -q tests/test_gpu.py tests/test_gpu_numba.py tests/test_gpu_cupy.py tests/test_plugin.py \
    2>&1 | tee "$OUT/pytest_gpu.log"
tests_status=${PIPESTATUS[0]}

# the benchmark: correctness at GPU sizes, then the timings and their torch ratios
timeout 150 python3 benchmarks/gpu_bench.py --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
bench_status=${PIPESTATUS[0]}

echo "tests exit ${tests_status}, benchmark exit ${bench_status}"
exit $(( tests_status != 0 || bench_status != 0 ))

import sys
from pathlib import Path

from seqcheck.gpu.registry import use_simulator_without_gpu

# Numba's CUDA simulator must be chosen before numba.cuda is first imported.
use_simulator_without_gpu()

# The mutants are test helpers, imported as `mutants.<family>` from this folder.
sys.path.insert(0, str(Path(__file__).parent))

import sys
from pathlib import Path

# The mutants are test helpers, imported as `mutants.<family>` from this folder.
sys.path.insert(0, str(Path(__file__).parent))

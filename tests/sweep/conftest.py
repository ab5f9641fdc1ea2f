import sys
from pathlib import Path

# sweep_helpers / sweep_data: unique module names, next to the tests that import them.
sys.path.insert(0, str(Path(__file__).parent))

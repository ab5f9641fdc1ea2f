"""Make the shared peer case importable without a tests package."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

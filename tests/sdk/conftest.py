"""The SDKs live outside the Django project: import the Python one from its source tree."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK_PY = ROOT / "sdk" / "python"
SDK_JS = ROOT / "sdk" / "js"
VECTORS = ROOT / "assignment" / "vectors.json"

if str(SDK_PY) not in sys.path:
    sys.path.insert(0, str(SDK_PY))

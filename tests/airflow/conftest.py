"""The Airflow tests import their shared helpers (airflow_env.py) by name, as tests/faults does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

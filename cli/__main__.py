"""``python -m cli ...`` is ``esteira ...`` (tests and subprocesses that run the command with this Python)."""
import sys

from cli.main import main

sys.exit(main())

"""The fixtures the command tests share with the rooms they drive: the demo model server (tests/serving)
and the MLflow registry (tests/tracking)."""
from tests.serving.conftest import model_store, shared_server  # noqa: F401
from tests.tracking.conftest import client, experiment, model_name, target  # noqa: F401

"""Pipeline file for TFX's own CLI (`tfx pipeline create --engine local --pipeline_path <this file>`).

The use case comes from the ESTEIRA_CONFIG environment variable (default: configs/breast_cancer.yaml);
relative paths in it resolve against the directory the `tfx` command runs in.
"""
import os
import sys

# The TFX CLI runs this file as a script, which puts this folder first on sys.path; drop it so
# that `pipeline` resolves to the package, not to modules inside it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx import v1 as tfx  # noqa: E402

from pipeline.config import check_data_columns, load_config  # noqa: E402
from pipeline.dag import create_pipeline  # noqa: E402
from pipeline.runners import prepare_devices  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(_HERE), "configs", "breast_cancer.yaml")

if __name__ == "__main__":
    config = load_config(os.environ.get("ESTEIRA_CONFIG", DEFAULT_CONFIG))
    check_data_columns(config)
    prepare_devices(config)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))

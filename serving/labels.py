"""Version labels of one model in a models.config, changed on the running server first, then in the file.

The one place labels move: ``esteira promote``/``rollback`` (tracking.champion), the review console and
continuous training all call :func:`apply_version_labels`. A refusal by the server changes nothing.
"""
from __future__ import annotations

from errors import EsteiraError


class LabelChangeError(EsteiraError):
    """The labels could not be changed; the message says why, and nothing was changed."""


def apply_version_labels(model_config_file: str, model_name: str, labels: dict[str, int], *,
                         server: str | None = None, token: str | None = None,
                         dry_run: bool = False) -> tuple[dict[str, int], dict[str, int]]:
    """Set version labels of one model in a models.config: first on the running server (when
    ``server`` is given, by HandleReloadConfigRequest), then in the file, so a refusal changes
    nothing. Returns the labels before and after."""
    from serving.client import GrpcClient, ServingClientError
    from serving.config import ConfigError, read_model_config, write_model_config

    try:
        config = read_model_config(model_config_file)
    except ConfigError as exc:
        raise LabelChangeError(str(exc)) from None
    model = next((m for m in config.model_config_list.config if m.name == model_name), None)
    if model is None:
        names = ", ".join(m.name for m in config.model_config_list.config) or "none"
        raise LabelChangeError(f"model {model_name!r} is not in {model_config_file} (models: {names})")
    before = dict(model.version_labels)
    for label, version in labels.items():
        model.version_labels[label] = version
    after = dict(model.version_labels)
    if dry_run:
        return before, after
    if server:
        try:
            with GrpcClient(server, token=token, retries=1) as client:
                client.reload(config)
        except ServingClientError as exc:
            raise LabelChangeError(
                f"the server refused the new labels ({exc.code}: {exc.message}); nothing was changed") from None
    write_model_config(config, model_config_file)
    return before, after

"""Moving the registry's champion alias, and the server labels with it, as one audited change.

Order of work: check everything in the registry (``tracking.registry.plan_promote``/``plan_rollback``),
then set the labels (on the server when one is given, then in the models.config file), then move the
alias, then append to the audit log; any refusal before the alias moves leaves the registry, the server
and the file as they were. ``esteira promote``/``rollback``, the review console and continuous training
all move the champion through :func:`change_champion`.
"""
from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tracking.registry import ChampionMove

DEFAULT_AUDIT_LOG = "outputs/audit/registry.jsonl"


def actor() -> str:
    """Who is acting: ESTEIRA_ACTOR (e.g. set by CI to the approver), else the OS user."""
    return os.environ.get("ESTEIRA_ACTOR") or getpass.getuser()


def change_champion(client: MlflowClient, move: ChampionMove, model_config_file: str | Path, *, action: str,
                    actor_name: str, audit_log: str | Path, tracking_uri: str, server: str | None = None,
                    token: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Apply a planned champion move: server labels first, then the file, then the alias, then the
    audit record naming ``actor_name``. Returns the labels before and after; raises
    LabelChangeError (nothing changed) or TrackingError."""
    from privacy.audit import AuditLog
    from serving.labels import apply_version_labels
    from tracking.registry import apply_move

    before, after = apply_version_labels(str(model_config_file), move.model_name, move.labels, server=server,
                                         token=token)
    apply_move(client, move)
    with AuditLog(audit_log) as audit:
        audit.append({"event": f"registry.{action}", "actor": actor_name, "model": move.model_name,
                      "champion_before": move.before, "champion_after": move.after,
                      "labels_before": before, "labels_after": after,
                      "model_config_file": str(Path(model_config_file).resolve()),
                      "server": server, "tracking_uri": tracking_uri})
    return before, after

"""A Pusher that never publishes the same model twice."""
from components.idempotent_pusher.executor import IdempotentPusherExecutor

__all__ = ["IdempotentPusherExecutor"]

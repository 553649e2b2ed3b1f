"""A Pusher for model servers: idempotent, and each version carries its drift reference."""
from components.serving_pusher.component import ServingPusher
from components.serving_pusher.executor import ServingPusherExecutor

__all__ = ["ServingPusher", "ServingPusherExecutor"]

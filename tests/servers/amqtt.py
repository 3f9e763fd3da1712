"""amqtt in-process: the embedded broker paddock itself uses on one laptop."""

from deploy.broker import EmbeddedBroker

__all__ = ["EmbeddedBroker"]

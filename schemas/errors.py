"""Errors raised when something does not follow the contract."""


class ContractError(ValueError):
    """Input that breaks the wire or storage contract (a bad id, topic, envelope or message)."""

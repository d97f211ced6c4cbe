"""Nexus core: configuration, store, services, RPC client and the command registry."""

__version__ = "0.1.0"

"""Nexus daemon: RPC server, dispatcher, Dramatiq workers and process lifecycle."""

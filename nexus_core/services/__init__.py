"""Domain services: plain functions on a connection, always scoped by the caller's organization."""

"""JSON-RPC 2.0 over a Unix socket: framing, error codes and the client."""

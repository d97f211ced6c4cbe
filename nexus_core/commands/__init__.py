"""Commands shared by the CLI and the TUI."""

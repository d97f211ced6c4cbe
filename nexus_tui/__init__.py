"""Nexus TUI (Textual): arrives with the TUI issue."""

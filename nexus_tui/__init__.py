"""The Nexus TUI: a Textual app that talks to the daemon over its socket, never importing the daemon."""

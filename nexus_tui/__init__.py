"""The Nexus TUI: a Textual app that talks to the daemon over its socket, never importing the daemon."""

import os

# Textual draws at most 60 frames a second by default; a keystroke's result then waits up to two frame
# periods to show. Frames are drawn only when something changed, so a higher cap costs nothing idle.
os.environ.setdefault("TEXTUAL_FPS", "120")

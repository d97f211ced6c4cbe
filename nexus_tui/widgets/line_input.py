"""A one-line Input that takes a burst of keys in the order they were typed.

Textual's Input inserts a printed character the moment it handles the key, but a bound key (enter,
backspace, ctrl+k, tab, the arrows) first bubbles back up to the App, which runs its binding only
then. Keys that arrive in one burst — a fast typist, a macro, a script driving tmux — are all routed
to the field before the first bound one comes back, so `sys:health⏎` after `ctrl+a ctrl+k` ran as
"type sys:health, then clear the line, then submit an empty one" (Textual issue #6605).

LineInput runs the binding of a non-printing key while it handles the key, in the position it was
typed; and a key that reaches it after an earlier key of the burst moved the focus away (tab to the
next field) goes back to the App, which sends it where a key typed now would go.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class LineInput(Input):
    async def _on_key(self, event: events.Key) -> None:
        focused = self.app.focused
        if focused is not None and focused is not self:
            # Routed here before an earlier key of the same burst moved the focus.
            # Sent back to the App, it goes where a key typed now would go.
            event.stop()
            event.prevent_default()
            self.app.post_message(events.Key(event.key, event.character))
            return
        if event.is_printable:
            return  # Input inserts it
        active = self.screen.active_bindings.get(event.key)
        if active is None or active.binding.priority or not active.enabled:
            return  # priority bindings were tried before the key came here; the rest bubbles as usual
        if await self.app.run_action(active.binding.action, active.node):
            event.stop()
            event.prevent_default()

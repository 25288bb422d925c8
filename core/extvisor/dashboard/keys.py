"""What the dashboard's keys do to services: move, start, stop (after asking), restart, filter.

A mixin of :class:`~extvisor.dashboard.app.DashboardApp`: it uses the app's table, filter
box, model, selected node and ``mark_dirty``.
"""

from __future__ import annotations

import time
from typing import Any

from textual import work

from extvisor.client.format import printable
from extvisor.dashboard.feed import ApiError, Unreachable
from extvisor.dashboard.widgets import ConfirmStop

ACTING = {"stop": "stopping", "restart": "restarting"}


class ServiceKeys:
    """Key actions on the selected service, and the filter (bound in DashboardApp.BINDINGS)."""

    def action_move(self, step: int) -> None:
        if step > 0:
            self.table.action_cursor_down()
        else:
            self.table.action_cursor_up()

    def action_act(self, action: str) -> None:
        sid = self.table.selected
        if sid is None:
            self.notify("no service selected", severity="warning")
            return
        self.perform(sid, action)

    def action_stop(self) -> None:
        sid = self.table.selected
        if sid is None:
            self.notify("no service selected", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.perform(sid, "stop")

        self.push_screen(ConfirmStop(sid), answered)

    @work(exit_on_error=False)
    async def perform(self, sid: str, action: str) -> None:
        if action != "start":
            self.say(f"{ACTING[action]} {sid}…", timeout=2)
        view = self.view  # the node selected when the key was pressed
        try:
            message = await view.feed.action(sid, action)
        except Unreachable as exc:
            self.say(f"{action} {sid}: daemon not reachable ({exc})", severity="error")
            return
        except ApiError as exc:
            self.say(f"{action} {sid}: {exc}", severity="error")
            return
        except Exception as exc:  # noqa: BLE001
            self.say(f"{action} {sid}: {type(exc).__name__}: {exc}", severity="error")
            return
        self.say(message)
        self.mark_dirty(sid, view)

    def say(self, text: str, **kw: Any) -> None:
        """A notification of what a node said: neither markup nor escape sequences."""
        self.notify(printable(text), markup=False, **kw)

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.filter_box
        if not box.has_class("-shown") and not self.needle:
            return
        box.value = ""
        box.remove_class("-shown")
        self.set_filter("")
        self.table.focus()

    def set_filter(self, needle: str) -> None:
        if needle == self.needle:
            return
        self.needle = needle
        self.table.rebuild(self.model.services.values(), needle, time.time())
        self.selection_changed()


"""Sinks: where committed state goes after the journal (notifications, MongoDB)."""

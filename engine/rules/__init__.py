"""Rule families, one module each, listed here explicitly."""

from engine.rules import reminder

FAMILIES = {reminder.FAMILY: reminder}

__all__ = ["FAMILIES", "reminder"]

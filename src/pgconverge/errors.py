"""What a user can act on. Anything else that escapes is a bug in pgconverge and shows as one."""

from __future__ import annotations


class UserError(Exception):
    """One masked line: what is wrong, where, and what to do."""

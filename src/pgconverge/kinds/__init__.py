"""One module per object kind: its catalog query, its comparison of what is with what is declared, its plan
and rollback steps. The planner orders across kinds; the kinds in REGISTRY are looped over (kinds/kind.py)."""

from .kind import Kind, PlanContext
from .view import VIEW

# in dependency order: a later kind's objects may use an earlier one's; rollback goes the other way
REGISTRY: tuple[Kind, ...] = (VIEW,)

__all__ = ["REGISTRY", "Kind", "PlanContext"]

"""One module per object kind: its catalog query, its comparison of what is with what is declared, its plan
and rollback steps. The planner orders across kinds; the kinds in REGISTRY are looped over (kinds/kind.py)."""

from .kind import Kind, PlanContext
from .policy import POLICY
from .row_level_security import ROW_LEVEL_SECURITY
from .view import VIEW

# in dependency order: a later kind's objects may use an earlier one's; rollback goes the other way (RLS is
# switched on after its table's policies exist, and back before they go)
REGISTRY: tuple[Kind, ...] = (VIEW, POLICY, ROW_LEVEL_SECURITY)

__all__ = ["REGISTRY", "Kind", "PlanContext"]

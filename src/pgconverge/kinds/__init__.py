"""One module per object kind: its catalog query, its comparison of what is with what is declared, its plan
and rollback steps, what each object must come after. The planner orders across kinds; the kinds in REGISTRY are
looped over (kinds/kind.py)."""

from .cron_job import CRON_JOB
from .extension import EXTENSION
from .function import FUNCTION
from .index import INDEX
from .kind import Kind, PlanContext, Planned
from .matview import MATVIEW
from .policy import POLICY
from .privileges import PRIVILEGES
from .row_level_security import ROW_LEVEL_SECURITY
from .view import VIEW

# The order of a phase where nothing else decides: an object comes after what it reads (Kind.after), else after
# the objects of earlier kinds, then in the order declared; rollback goes the other way. Extensions before the
# indexes that use their operator classes; RLS switched on after its table's policies exist; grants after what
# they are on; cron jobs after what they run.
REGISTRY: tuple[Kind, ...] = (EXTENSION, INDEX, MATVIEW, FUNCTION, VIEW, POLICY, ROW_LEVEL_SECURITY, PRIVILEGES,
                              CRON_JOB)

__all__ = ["REGISTRY", "Kind", "PlanContext", "Planned"]

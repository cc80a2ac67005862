"""One module per object kind: its catalog query, its comparison of what is with what is declared, its plan
and rollback steps. The planner orders across kinds."""

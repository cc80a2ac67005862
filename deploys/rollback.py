"""Roll back a phase and all later ones: pyinfra INVENTORY deploys/rollback.py --data phase=phase2"""

from pyinfra import host

from pgconverge.deploy import rollback
from pgconverge.provision import backend_cache

rollback(host.data.get("phase") or "phase1")
if (host.data.get("phase") or "phase1") == "phase1":
    backend_cache(enable=False)  # the runbook's cache rollback: the backend stops using Redis

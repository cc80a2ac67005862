"""Roll back a phase and all later ones: pyinfra INVENTORY deploys/rollback.py --data phase=phase2"""

from pyinfra import host

from pgconverge.deploy import rollback
from pgconverge.provision import backend_cache

if rollback(host.data.get("phase")):
    backend_cache(enable=False)  # the whole runbook undone: the backend stops using Redis

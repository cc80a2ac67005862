"""Roll back a phase and all later ones: pyinfra INVENTORY deploys/rollback.py --data phase=phase2"""

from pyinfra import host

from pgconverge.deploy import rollback

rollback(host.data.get("phase") or "phase1")

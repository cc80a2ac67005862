"""Converge one phase of any phases.yml (and the phases it requires): pyinfra INVENTORY deploys/phase.py --data phase=ID"""

from pyinfra import host

from pgconverge.deploy import converge

converge(host.data.get("phase") or "")

"""Converge the target database to phase 1 of phases.yml (and the phases it requires), then run the gates."""

from pgconverge.deploy import converge

converge("phase1")

"""Converge the target database to every phase of phases.yml, each followed by its gates."""

from pgconverge.deploy import converge

converge()

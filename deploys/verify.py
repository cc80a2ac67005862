"""Run every gate of every phase; changes nothing."""

from pgconverge.deploy import verify

verify()

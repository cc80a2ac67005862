"""pgconverge: database optimization as code for PostgreSQL and Supabase (pyinfra deploys, phases.yml)."""

__version__ = "0.1.0"

"""Staging: the Supabase database, reached from the control node; cache and app hosts over SSH.

Secrets never live here: each host names the environment variable that holds its URL or password.
Export STAGING_DATABASE_URL before running, e.g. pyinfra inventory/staging.py deploys/all.py --dry
"""

db = (
    [
        ("@db/staging-main", {"database_url_env": "STAGING_DATABASE_URL"}),
    ],
    {"environment": "staging", "role": "db"},
)

cache = (
    [
        ("redis-staging.internal", {"redis_password_env": "STAGING_REDIS_PASSWORD", "redis_maxmemory": "512mb"}),
    ],
    {"environment": "staging", "role": "cache"},
)

app = (
    [
        ("app-staging.internal", {"backend_env_file": "/srv/salesflow/backend/.env", "redis_url_env": "STAGING_REDIS_URL"}),
    ],
    {"environment": "staging", "role": "app"},
)

backup = (
    [
        ("backup-staging.internal", {"backup_dir": "/var/backups/salesflow", "backup_retention": 7}),
    ],
    {"environment": "staging", "role": "backup"},
)

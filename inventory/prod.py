"""Production: one or more Supabase databases (a fleet), reached from the control node; cache and app over SSH.

Secrets never live here: export PROD_MAIN_DATABASE_URL (and the others named below) before running, e.g.
pyinfra inventory/prod.py deploys/phase1.py    (asks for confirmation before executing)
"""

db = (
    [
        ("@db/prod-main", {"database_url_env": "PROD_MAIN_DATABASE_URL"}),
    ],
    {"environment": "prod", "role": "db"},
)

cache = (
    [
        ("redis-prod-1.internal", {"redis_password_env": "PROD_REDIS_PASSWORD", "redis_maxmemory": "2gb"}),
    ],
    {"environment": "prod", "role": "cache"},
)

app = (
    [
        ("app-prod-1.internal", {"backend_env_file": "/srv/salesflow/backend/.env", "redis_url_env": "PROD_REDIS_URL"}),
        ("app-prod-2.internal", {"backend_env_file": "/srv/salesflow/backend/.env", "redis_url_env": "PROD_REDIS_URL"}),
    ],
    {"environment": "prod", "role": "app"},
)

backup = (
    [
        ("backup-prod.internal", {"backup_dir": "/var/backups/salesflow", "backup_retention": 14}),
    ],
    {"environment": "prod", "role": "backup"},
)

"""The local lab (`pgconverge lab up`): the database is reached from this machine through DATABASE_URL.

`make demo` exports DATABASE_URL and REDIS_URL from ./.lab/env; set them yourself to point at another server.
"""

db = [("@local", {"environment": "lab", "database_url_env": "DATABASE_URL", "redis_url_env": "REDIS_URL",
                "backup_dir": "backups", "backup_retention": 3})]

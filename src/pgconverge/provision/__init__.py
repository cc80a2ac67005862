"""What the deploys provision besides the database: Redis and the backend's cache settings (redis.py), nightly
backups (backups.py), dotenv files (envfile.py)."""

from .backups import nightly_backups
from .redis import backend_cache, redis_server

__all__ = ["backend_cache", "nightly_backups", "redis_server"]

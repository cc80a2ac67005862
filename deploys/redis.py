"""Redis on the cache hosts (config, service, gates); REDIS_URL and ENABLE_CACHE on the app hosts."""

from pyinfra import host

from pgconverge.provision import backend_cache, redis_server

if "cache" in host.groups or host.data.get("role") == "cache":
    redis_server()
backend_cache(enable=True)

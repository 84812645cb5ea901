"""Token rate limits shared by every gateway of a factory, in Redis.

Each take is one Lua script, so Redis runs the refill, the check and the take of a key's
bucket as one step whichever gateway asks; the time is Redis's own `TIME`, so gateways
whose clocks disagree still refill the same bucket at the same rate. A bucket left alone
expires once it would be full again: a missing bucket is a full one.

If Redis cannot be reached the gateway keeps serving: the take falls back to this
process's own bucket (counted in `tokenfactory_rate_limit_fallbacks_total`, logged once
per outage), so for that time a key's limit holds per gateway, not across them. Budgets
are not affected: they are charged in the ledger.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenfactory.gateway.limits import TokenBuckets

log = logging.getLogger("tokenfactory.gateway")
TIMEOUT_S = 0.5  # a take waits no longer than this for Redis before falling back
RETRY_S = 1.0  # after a failure, Redis is tried again this long later

# KEYS[1]: the bucket; ARGV: per_minute, tokens. Returns the seconds to wait ("0": taken).
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_minute = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local rate = per_minute / 60
local level = tonumber(redis.call('HGET', KEYS[1], 'level'))
local at = tonumber(redis.call('HGET', KEYS[1], 'at'))
if level == nil or at == nil then
  level = per_minute
  at = now
end
level = math.min(per_minute, level + math.max(0, now - at) * rate)
local need = math.min(tokens, per_minute)
local wait = 0
if level >= need then
  level = level - tokens
else
  wait = (need - level) / rate
end
redis.call('HSET', KEYS[1], 'level', string.format('%.6f', level), 'at',
  string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.ceil((per_minute - level) / rate) + 1)
return string.format('%.6f', wait)
"""


class RedisBuckets:
    """Token buckets in Redis under `prefix`, one per key, shared by all gateways."""

    def __init__(self, url: str, prefix: str, registry: CollectorRegistry) -> None:
        self.redis = Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self.prefix = prefix
        self.local = TokenBuckets()
        self._script = self.redis.register_script(TAKE)
        self._down_until = 0.0  # monotonic; Redis is not tried before it
        self.fallbacks = Counter(
            "tokenfactory_rate_limit_fallbacks",
            "Rate-limit takes decided by this gateway alone because Redis was unreachable.",
            registry=registry,
        )

    def bucket(self, key_id: int) -> str:
        """The Redis key of a key's bucket."""
        return f"{self.prefix}bucket:{key_id}"

    async def take(self, key_id: int, per_minute: int, tokens: int) -> float:
        """Take `tokens` from the shared bucket (0.0), else the seconds to wait."""
        if time.monotonic() >= self._down_until:
            try:
                wait = await self._script(keys=[self.bucket(key_id)], args=[per_minute, tokens])
                if self._down_until:
                    log.warning("Redis is back: rate limits are shared again")
                    self._down_until = 0.0
                return float(wait)
            except RedisError as e:
                if not self._down_until:
                    log.warning("Redis unreachable (%s): rate limits are per gateway", e)
                self._down_until = time.monotonic() + RETRY_S
        self.fallbacks.inc()
        return await self.local.take(key_id, per_minute, tokens)

    async def close(self) -> None:
        """Close the connections."""
        await self.redis.aclose()

"""Worker mode: the deployment's flows, kept in the channel layer's Redis.

The directory is what lets any process find a flow by id alone, lets a
survivor adopt a dead worker's flows, and keeps one flow per key. It holds
no flow state: only who hosts each flow and its *start spec* (definition
key, start state, ``notify``, ``key``). Keys, under
``<layer prefix>:<GROUP_PREFIX>:``:

- ``host:<host>`` → the host's channel, with a TTL of ``LEASE_SECONDS``
  renewed by its heartbeat: the lease on every flow it owns.
- ``hosts`` → every host id that has registered (survivors scan it).
- ``owner:<flow>`` → the hosting host's id; kept for ``RETAIN_SECONDS``
  after the flow ends, so a late reader is routed to the retained result.
- ``spec:<flow>`` → the start spec (JSON), while the flow runs.
- ``flows:<host>`` → the ids of the running flows a host owns.
- ``adopted:<flow>`` → how many times the flow was adopted.
- ``key:<definition>:<key>`` → the running flow of that key.
- ``epoch`` → when this Redis first saw a host (it is gone after a Redis
  restart, which tells readers the directory is being rebuilt).

Every change that must happen once is one Lua script, so it is atomic
across processes. The Redis connection is built from the channel layer's
own first host (a URL, a host dict with socket options, or Sentinel), so
Redis is configured once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .conf import get_settings

_ROUTE = """
local owner = redis.call('GET', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
if not owner then return {false, false, epoch} end
return {owner, redis.call('GET', ARGV[1] .. 'host:' .. owner), epoch}
"""

# KEYS: key:<def>:<key>; ARGV: flow id, ttl ms. Returns the id holding the key.
_CLAIM_KEY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
"""

_RELEASE_KEY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: owner, spec, flows:<host>, key (or ''); ARGV: host, flow, spec, force.
# force=1 (a start): take the flow. force=0 (taking back after an outage): only if the
# flow is ours or nobody's. Returns 1 if the host owns the flow afterwards.
_REGISTER = """
local owner = redis.call('GET', KEYS[1])
if ARGV[4] ~= '1' and owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
if KEYS[4] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  if not holder or holder == ARGV[2] then redis.call('SET', KEYS[4], ARGV[2]) end
end
return 1
"""

# KEYS: owner, spec, flows:<host>, key (or ''), adopted; ARGV: host, flow, retain ms.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  else
    redis.call('DEL', KEYS[1])
  end
  redis.call('DEL', KEYS[2], KEYS[5])
end
redis.call('SREM', KEYS[3], ARGV[2])
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
return 0
"""

# KEYS: host:<host>, hosts, epoch; ARGV: host, channel, lease ms, now.
# Returns {whether the lease was still held, the epoch}.
_HEARTBEAT = """
local held = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[4], 'NX')
return {held, redis.call('GET', KEYS[3])}
"""

# KEYS: flows:<dead>, flows:<me>, hosts, host:<dead>; ARGV: prefix, dead, me, batch.
# Moves up to `batch` of a dead host's flows to `me`; returns {id, spec, adoptions}...
_ADOPT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local out = {}
local ids = redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  redis.call('SREM', KEYS[1], id)
  local owner_key = ARGV[1] .. 'owner:' .. id
  if redis.call('GET', owner_key) == ARGV[2] then
    local spec = redis.call('GET', ARGV[1] .. 'spec:' .. id)
    if spec then
      redis.call('SET', owner_key, ARGV[3])
      redis.call('SADD', KEYS[2], id)
      local n = redis.call('INCR', ARGV[1] .. 'adopted:' .. id)
      table.insert(out, id)
      table.insert(out, spec)
      table.insert(out, n)
    end
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return out
"""


@dataclass(frozen=True)
class Route:
    """Where a flow is: its owner's id and channel (None when unknown or the owner is dead)."""

    owner: str | None
    channel: str | None
    #: When the directory's Redis first saw a host (None: empty, e.g. just restarted).
    epoch: float | None


@dataclass(frozen=True)
class Adopted:
    """A flow taken over from a dead host."""

    flow_id: str
    spec: dict[str, Any]
    adoptions: int


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def dump_spec(spec: dict[str, Any]) -> str:
    """The JSON form a start spec is kept in."""
    return json.dumps(spec, cls=DjangoJSONEncoder, separators=(",", ":"))


class Directory:
    """The flows of the deployment, in Redis; one instance per event loop."""

    def __init__(self, layer: Any) -> None:
        if not callable(getattr(layer, "connection", None)) or not getattr(layer, "hosts", None):
            raise TypeError(f"worker mode needs a channels-redis layer, got {layer!r:.80}")
        self.layer = layer
        self.prefix = f"{getattr(layer, 'prefix', 'asgi')}:{get_settings().GROUP_PREFIX}:"
        self._scripts: dict[str, Any] = {}

    @property
    def redis(self) -> Any:
        """The layer's own connection to its first host, on the running loop.

        channels-redis keeps one pool per event loop and closes it with the
        loop, so the directory needs no connections of its own.
        """
        return self.layer.connection(0)

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        connection = self.redis
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = connection.register_script(source)
        return await script(keys=keys, args=args, client=connection)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def key_name(self, definition: str, key: str | None) -> str:
        """The Redis key of a keyed flow ('' when the flow has no key)."""
        return "" if key is None else self._k("key", definition, key)

    # -- callers -----------------------------------------------------------

    async def route(self, flow_id: str) -> Route:
        owner, channel, epoch = await self._run(
            _ROUTE, [self._k("owner", flow_id), self._k("epoch")], [self.prefix]
        )
        when = _text(epoch)
        return Route(_text(owner), _text(channel), float(when) if when else None)

    async def claim_key(self, key_name: str, flow_id: str, ttl: float) -> str:
        """``flow_id`` if the key was free and is now being started by us; else its holder."""
        holder = await self._run(_CLAIM_KEY, [key_name], [flow_id, int(ttl * 1000)])
        return _text(holder) or flow_id

    async def release_key(self, key_name: str, flow_id: str) -> None:
        await self._run(_RELEASE_KEY, [key_name], [flow_id])

    async def key_holder(self, key_name: str) -> str | None:
        return _text(await self.redis.get(key_name))

    # -- hosts -------------------------------------------------------------

    async def register(
        self, host: str, flow_id: str, spec: dict[str, Any], *, force: bool = True
    ) -> bool:
        """Record ``host`` as the owner of ``flow_id`` (a start, or a take-back)."""
        keys = [
            self._k("owner", flow_id),
            self._k("spec", flow_id),
            self._k("flows", host),
            self.key_name(spec["flow"], spec.get("key")),
        ]
        done = await self._run(_REGISTER, keys, [host, flow_id, dump_spec(spec), int(force)])
        return bool(done)

    async def finish(self, host: str, flow_id: str, spec: dict[str, Any], retain: float) -> None:
        """The flow ended: keep its owner for ``retain`` seconds, drop the rest."""
        keys = [
            self._k("owner", flow_id),
            self._k("spec", flow_id),
            self._k("flows", host),
            self.key_name(spec["flow"], spec.get("key")),
            self._k("adopted", flow_id),
        ]
        await self._run(_FINISH, keys, [host, flow_id, int(retain * 1000)])

    async def heartbeat(self, host: str, channel: str, lease: float) -> tuple[bool, float]:
        """Renew the host's lease; returns (whether it was still held, the epoch)."""
        keys = [self._k("host", host), self._k("hosts"), self._k("epoch")]
        held, epoch = await self._run(
            _HEARTBEAT, keys, [host, channel, int(lease * 1000), f"{time.time():.3f}"]
        )
        return bool(held), float(_text(epoch) or 0)

    async def epoch(self) -> float | None:
        """When this Redis first saw a host (None: it is empty, e.g. it just restarted)."""
        value = _text(await self.redis.get(self._k("epoch")))
        return float(value) if value else None

    async def routes(self, flow_ids: list[str]) -> list[Route]:
        """The route of each flow (epoch left out), in two round trips for all of them."""
        if not flow_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for flow_id in flow_ids:
                pipe.get(self._k("owner", flow_id))
            owners = [_text(owner) for owner in await pipe.execute()]
        hosts = sorted({owner for owner in owners if owner})
        channels: dict[str, str | None] = {}
        if hosts:
            async with self.redis.pipeline(transaction=False) as pipe:
                for host in hosts:
                    pipe.get(self._k("host", host))
                channels = dict(zip(hosts, map(_text, await pipe.execute()), strict=True))
        return [Route(owner, channels.get(owner) if owner else None, None) for owner in owners]

    async def owner(self, flow_id: str) -> str | None:
        return _text(await self.redis.get(self._k("owner", flow_id)))

    async def dead_hosts(self, me: str) -> list[str]:
        """Registered hosts whose lease has expired."""
        return [h for h, up in await self._leases(other_than=me) if not up]

    async def live_hosts(self) -> list[str]:
        """Registered hosts whose lease is held (the workers that should answer)."""
        return sorted(h for h, up in await self._leases() if up)

    async def _leases(self, other_than: str | None = None) -> list[tuple[str, bool]]:
        """Each registered host (but ``other_than``), and whether its lease is held."""
        members = await self.redis.smembers(self._k("hosts"))
        hosts = [h for h in map(_text, members) if h is not None and h != other_than]
        if not hosts:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.exists(self._k("host", host))
            alive = await pipe.execute()
        return [(h, bool(up)) for h, up in zip(hosts, alive, strict=True)]

    async def adopt(self, dead: str, me: str, batch: int = 50) -> list[Adopted]:
        """Take up to ``batch`` running flows of a dead host; each goes to one adopter."""
        keys = [
            self._k("flows", dead),
            self._k("flows", me),
            self._k("hosts"),
            self._k("host", dead),
        ]
        found = await self._run(_ADOPT, keys, [self.prefix, dead, me, batch])
        out = []
        for i in range(0, len(found), 3):
            flow_id, spec, count = _text(found[i]), _text(found[i + 1]), int(found[i + 2])
            if flow_id and spec:
                out.append(Adopted(flow_id, json.loads(spec), count))
        return out

    async def leave(self, host: str) -> None:
        """A host shuts down cleanly: drop its lease and its entry."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._k("host", host), self._k("flows", host))
            pipe.srem(self._k("hosts"), host)
            await pipe.execute()

"""Which generators are registered, and which have gone silent.

Pure bookkeeping with no sockets: the run scheduler calls it
with the routing id of each message and the current (monotonic) time.
"""
import dataclasses
import time

from stressgrid.plan.constants import CPU_WARNING_PERCENT

# A connection that claims the id of a registered generator silent this long is that
# generator restarted (it heartbeats every second); sooner, it is refused.
RESTART_SILENCE_S = 2.5


class GeneratorIdInUse(Exception):
    """A registration that claims the id of another connected generator (``holder``)."""

    def __init__(self, holder, message):
        super().__init__(message)
        self.holder = holder


@dataclasses.dataclass(eq=False)
class Generator:
    """One registered generator host.

    ``routing_id`` is its ZeroMQ identity (the generator id as bytes);
    ``active_devices`` and ``cpu_percent`` are from its latest telemetry.
    """

    routing_id: bytes
    generator_id: str
    version: str
    cores: int
    workers: int
    capacity: int
    registered_at: float
    last_seen: float
    active_devices: int = 0
    cpu_percent: float = 0.0  # peak CPU over the last complete second
    cpu_pending: object = None  # peak so far in the current second (None: no report yet)
    registrations: int = 1
    suspect: bool = False  # sent a malformed message: validate its telemetry before merging
    source_addresses: int = 0  # its source-address pool's size (0: the system picks)
    instance: str = ""  # the agent's instance token (wire.Register.instance)

    def to_dict(self, now):
        """The JSON form the API shows (``now``: the registry's monotonic time)."""
        return {"id": self.generator_id, "version": self.version, "cores": self.cores,
                "workers": self.workers, "capacity": self.capacity,
                "source_addresses": self.source_addresses,
                "registered_at": self.registered_at,
                "last_seen_s": round(max(now - self.last_seen, 0.0), 3),
                "active_device_number": self.active_devices,
                "cpu_percent": self.cpu_percent, "cpu_warning": self.cpu_percent > CPU_WARNING_PERCENT,
                "registrations": self.registrations}


class Registry:
    """Registered generators in registration order, dropped after ``timeout_s`` of silence.

    A generator id belongs to one connection (routing id) at a time: another
    connection claiming it is refused while its holder is heard from, and
    takes its place (a restarted generator) once the holder has been silent
    for ``RESTART_SILENCE_S``.
    """

    def __init__(self, timeout_s=5.0, wall_clock=time.time):
        self.timeout_s = timeout_s
        self.restart_silence_s = min(RESTART_SILENCE_S, timeout_s)
        self._wall = wall_clock
        self._generators = {}
        self._routing_ids = {}  # generator id -> routing id

    def __len__(self):
        return len(self._generators)

    def __iter__(self):
        return iter(list(self._generators.values()))

    def get(self, routing_id):
        """The generator with this routing id, or ``None``."""
        return self._generators.get(routing_id)

    def register(self, routing_id, message, now):
        """Add or refresh the generator of a ``wire.Register``: ``(generator, new, replaced)``.

        A connection that registers again (its link saw silence) keeps its
        place and its share of the current run. ``replaced``: the record of a
        silent connection with the same generator id that this one replaces
        (the generator restarted), or ``None``. Raises ``GeneratorIdInUse``
        when the id belongs to another connection still heard from, or when a
        connection claims a different id than it registered with.
        """
        found = self._generators.get(routing_id)
        if found is not None:
            if found.generator_id != message.generator_id:
                raise GeneratorIdInUse(found, f"this connection registered as {found.generator_id}, "
                                              f"not {message.generator_id}")
            found.version, found.cores = message.version, message.cores
            found.workers, found.capacity = message.workers, message.capacity
            found.source_addresses = message.source_addresses
            found.instance = message.instance
            found.last_seen = now
            found.registrations += 1
            return found, False, None
        replaced = self._generators.get(self._routing_ids.get(message.generator_id))
        if replaced is not None:
            silent = now - replaced.last_seen
            if silent < self.restart_silence_s:
                raise GeneratorIdInUse(replaced, f"generator id {message.generator_id} is in use by a "
                                                 f"connected generator (heard from {silent:.1f} s ago)")
            self.remove(replaced.routing_id)
        generator = Generator(routing_id=routing_id, generator_id=message.generator_id,
                              version=message.version, cores=message.cores,
                              workers=message.workers, capacity=message.capacity,
                              source_addresses=message.source_addresses, instance=message.instance,
                              registered_at=self._wall(), last_seen=now)
        self._generators[routing_id] = generator
        self._routing_ids[generator.generator_id] = routing_id
        return generator, True, replaced

    def holds_instance(self, routing_id, instance):
        """Whether the generator on ``routing_id`` registered with ``instance`` (not empty): a
        Register carrying it is that agent's link registering again, not a restarted agent."""
        found = self._generators.get(routing_id)
        return bool(instance) and found is not None and found.instance == instance

    def seen(self, routing_id, now):
        """Note a message from ``routing_id``; the generator, or ``None`` if not registered."""
        generator = self._generators.get(routing_id)
        if generator is not None:
            generator.last_seen = now
        return generator

    def expire(self, now):
        """Drop and return the generators silent for longer than ``timeout_s``."""
        limit = now - self.timeout_s
        gone = [g for g in self._generators.values() if g.last_seen < limit]
        for generator in gone:
            self.remove(generator.routing_id)
        return gone

    def remove(self, routing_id):
        """Forget a generator; returns it (or ``None``)."""
        generator = self._generators.pop(routing_id, None)
        if generator is not None and self._routing_ids.get(generator.generator_id) == routing_id:
            del self._routing_ids[generator.generator_id]
        return generator

    def to_list(self, now):
        """Every generator's JSON form, in registration order."""
        return [g.to_dict(now) for g in self._generators.values()]

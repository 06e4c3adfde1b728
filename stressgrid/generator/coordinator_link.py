"""The agent's link to the coordinator: registration, heartbeats and liveness.

A ZeroMQ DEALER connected to the coordinator's ROUTER over CurveZMQ with the
keys of the fleet's join token. Its identity is ``<generator id>/<instance>``,
the instance being random for each agent process: a reconnection of the same
process keeps its place, a restarted process is told apart from it, and the
coordinator refuses any other connection that claims a connected generator's id. ZeroMQ reconnects by itself; ``IMMEDIATE`` keeps messages from piling
up while no connection exists, so a coordinator that comes back is not
flooded with stale telemetry. The link registers until the coordinator
answers ``Registered``, registers again when the coordinator says it does not
know this generator, and when the coordinator (which heartbeats every second)
has been silent for ``silence_reregister_s`` - that is how a coordinator
restart is survived.
"""
import enum
import logging
import secrets
import time

import zmq

from stressgrid import __version__, wire

REGISTER_RETRY_S = 1.0
# An Error from the coordinator whose message contains this means: register again.
SEND_HIGH_WATER_MARK = 100

log = logging.getLogger(__name__)


def routing_identity(generator_id):
    """This process's identity on the coordinator's ROUTER: the generator id and a random instance."""
    return f"{generator_id}/{secrets.token_hex(8)}".encode()


def secure(socket, token):
    """Make ``socket`` a CurveZMQ client of the coordinator named by the join ``token``."""
    socket.curve_serverkey = token.coordinator_public
    socket.curve_publickey, socket.curve_secretkey = token.generator_keypair()


class LinkState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"


class CoordinatorLink:
    """Registration state and the DEALER socket of one generator."""

    def __init__(self, context, config, cores, workers, capacity, clock=time.monotonic, source_addresses=0):
        self.config = config
        self.register_message = wire.Register(generator_id=config.generator_id, version=__version__,
                                              cores=cores, workers=workers, capacity=capacity,
                                              source_addresses=source_addresses,
                                              instance=secrets.token_hex(8))
        self._clock = clock
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, routing_identity(config.generator_id))
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 200)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        secure(self.socket, config.join_token)
        try:
            self.socket.connect(config.coordinator_url)
        except zmq.ZMQError:
            self.socket.close(linger=0)
            raise
        self.state = LinkState.REGISTERING
        self.registrations = 0
        now = clock()
        self.last_heard = now
        self._register_due = now
        self._heartbeat_due = now

    @property
    def registered(self):
        return self.state is LinkState.REGISTERED

    def send(self, message):
        """Queue ``message`` for the coordinator; ``False`` when it cannot be queued now."""
        try:
            self.socket.send(wire.encode(message), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def receive(self):
        """The next raw message, or ``None`` when there is none."""
        try:
            return self.socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None

    def heard(self):
        """Note that the coordinator sent something (any message, even a bad one)."""
        self.last_heard = self._clock()

    def silent_for(self):
        return self._clock() - self.last_heard

    def on_registered(self, message):
        """Handle ``Registered``; ``True`` when it makes this a fresh registration.

        A fresh registration (after the first, the coordinator having lost
        track of this generator) means the coordinator knows none of the
        cohorts still running here. One the coordinator answers as ``known``
        (this link registered again after hearing nothing for a while, but
        the coordinator kept its place) is not fresh: the cohorts go on.
        """
        if self.registered:
            return False  # the answer to a repeated Register
        self.state = LinkState.REGISTERED
        self.registrations += 1
        self._heartbeat_due = self._clock()
        if message.known:
            log.warning("registered again with the coordinator at %s, which had kept this generator's place: "
                        "its devices go on", self.config.coordinator_url)
            return False
        log.info("registered with the coordinator at %s (coordinator version %s)",
                 self.config.coordinator_url, message.coordinator_version)
        return self.registrations > 1

    def on_error(self, message):
        """Handle an ``Error`` from the coordinator."""
        if message.message == wire.NOT_REGISTERED:
            log.warning("the coordinator does not know this generator (%s); registering again",
                        message.message)
            self.register_again()
        else:
            log.warning("the coordinator reports an error: %s", message.message)

    def register_again(self):
        self.state = LinkState.REGISTERING
        self._register_due = self._clock()

    def tick(self):
        """Send what is due: Register while registering, Heartbeat every second when registered."""
        now = self._clock()
        if self.registered and now - self.last_heard >= self.config.silence_reregister_s:
            log.warning("no word from the coordinator for %.1f s; registering again", now - self.last_heard)
            self.register_again()
        if self.state is LinkState.REGISTERING:
            if now >= self._register_due:
                self.send(self.register_message)
                self._register_due = now + REGISTER_RETRY_S
        elif now >= self._heartbeat_due:
            self.send(wire.Heartbeat(sent_at=time.time()))
            self._heartbeat_due = now + self.config.heartbeat_interval_s

    def next_due(self):
        """When ``tick`` next has something to do (clock time)."""
        if self.state is LinkState.REGISTERING:
            return self._register_due
        return min(self._heartbeat_due, self.last_heard + self.config.silence_reregister_s)

    def close(self):
        self.socket.close(linger=0)

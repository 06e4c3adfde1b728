"""Who may join the fleet: the coordinator's CurveZMQ keys, the join token, and the ZAP handler.

On first start the coordinator makes its CURVE key pair (``coordinator.key``
in its data directory) and the fleet's join token (``join-token``), both
readable by their owner only. The generator port speaks CURVE: every byte is
encrypted, and the ZAP handler here lets a peer in only when it proves the
generator key derived from the token (``stressgrid.join_token``). Refused
peers are logged, at most once per ``REFUSED_LOG_INTERVAL_S``.

``python -m coordinator_app join-token [--rotate]`` prints the token (making
the keys first if needed); ``--rotate`` replaces the fleet secret, so only
generators given the new token get in from then on (the running coordinator
reads the new token at the next handshake; connected generators stay until
they reconnect).
"""
import argparse
import hmac
import logging
import os
import pathlib
import threading
import time

import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from stressgrid.join_token import ENV, JoinToken, JoinTokenError, read_token_file, write_private

from .config import DEFAULT_DATA_DIR

KEY_FILE = "coordinator.key"
TOKEN_FILE = "join-token"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"stressgrid-fleet"
REFUSED_LOG_INTERVAL_S = 10.0
_POLL_MS = 200
# Peers that fail before ZAP is asked (no CURVE, or not this coordinator's key); the ZAP
# handler's own refusals are counted where it refuses.
_HANDSHAKE_FAILURES = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL

log = logging.getLogger(__name__)


class FleetKeyError(Exception):
    """The key or token file in the data directory cannot be used."""


def coordinator_keys(data_dir):
    """``(public, secret)`` Z85 CURVE keys of the coordinator, made on first use."""
    path = pathlib.Path(data_dir) / KEY_FILE
    if not path.exists():
        public, secret = zmq.curve_keypair()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, secret.decode() + "\n")
        log.info("made the coordinator's CURVE key pair in %s", path)
        return public, secret
    secret = path.read_text(encoding="ascii").strip().encode()
    try:
        return zmq.curve_public(secret), secret
    except (zmq.ZMQError, ValueError):
        raise FleetKeyError(f"{path} does not hold a CURVE secret key (40 Z85 characters)") from None


def join_token(data_dir, public=None):
    """The fleet's ``JoinToken`` from ``<data_dir>/join-token``, made on first use.

    ``public``: the coordinator's public key (read from its key file if not given).
    """
    if public is None:
        public, _ = coordinator_keys(data_dir)
    path = pathlib.Path(data_dir) / TOKEN_FILE
    if not path.exists():
        return rotate(data_dir, public)
    try:
        token = read_token_file(path)
    except JoinTokenError as exc:
        raise FleetKeyError(str(exc)) from None
    if token.coordinator_public != public:
        raise FleetKeyError(f"{path} belongs to another coordinator key than {path.parent / KEY_FILE}; "
                            f"make a new one with: python -m coordinator_app join-token --rotate "
                            f"--data-dir {path.parent}")
    return token


def rotate(data_dir, public=None):
    """Write a join token with a new fleet secret; returns it."""
    if public is None:
        public, _ = coordinator_keys(data_dir)
    token = JoinToken.new(public)
    write_private(pathlib.Path(data_dir) / TOKEN_FILE, token.encode() + "\n")
    return token


def secure(router, secret):
    """Make ``router`` a CURVE server whose peers the ZAP handler must let in (before ``bind``)."""
    router.curve_secretkey = secret
    router.curve_server = True
    router.zap_domain = ZAP_DOMAIN
    router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP handler: nobody gets in


def protect(context, router, data_dir):
    """Make the keys and token on first use, make ``router`` a CURVE server and start the ZAP
    handler for it (before ``router`` binds); returns the running ``ZapHandler``."""
    public, secret = coordinator_keys(data_dir)
    join_token(data_dir, public)
    secure(router, secret)
    handler = ZapHandler(pathlib.Path(data_dir) / TOKEN_FILE)
    handler.start(context, router)
    return handler


def start_hint(token_path, generator_url):
    """The lines that tell an operator how to start a generator of this fleet."""
    return (f"generators join with the token in {token_path}: copy it to the generator host and run\n"
            f"    python -m stressgrid.generator --coordinator {generator_url} --join-token-file PATH\n"
            f"or set {ENV} to its contents")


class ZapHandler:
    """Answers libzmq's ZAP requests on its own thread: the fleet's generator key gets in.

    ``start(context, router)`` binds the ZAP endpoint and watches ``router``'s
    handshake failures (peers without CURVE or without the coordinator's key);
    ``refused`` counts every refused peer.
    """

    def __init__(self, token_path, clock=time.monotonic):
        self.token_path = pathlib.Path(token_path)
        self._clock = clock
        self.refused = 0
        self._unlogged = 0
        self._latest_refusal = ""
        self._quiet_until = None
        self._token_stamp = None
        self._allowed = None
        self._stopping = threading.Event()
        self._thread = None

    def start(self, context, router):
        """Bind the ZAP endpoint on ``context`` and start answering (before ``router`` binds)."""
        self._allowed_key()  # a broken token file fails the start, not the first handshake
        zap = context.socket(zmq.REP)
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)
        monitor = router.get_monitor_socket(_HANDSHAKE_FAILURES)
        self._thread = threading.Thread(target=self._serve, args=(zap, monitor),
                                        name="stressgrid-zap", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop answering; returns once the thread has closed its sockets."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _allowed_key(self):
        """The generator public key of the current token (read again when its file changes)."""
        stat = os.stat(self.token_path)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._token_stamp:
            public, _ = read_token_file(self.token_path).generator_keypair()
            self._allowed = z85.decode(public)
            self._token_stamp = stamp
        return self._allowed

    def _serve(self, zap, monitor):
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                ready = dict(poller.poll(_POLL_MS))
                if zap in ready:
                    zap.send_multipart(self.answer(zap.recv_multipart()))
                if monitor in ready:
                    event = recv_monitor_message(monitor)
                    if event["event"] & _HANDSHAKE_FAILURES:
                        self._refuse(f"a handshake that failed (not CURVE, or not with this "
                                     f"coordinator's key: error {event['value']})")
                self._log_refused()
        finally:
            zap.close(0)
            monitor.close(0)

    def answer(self, frames):
        """The ZAP reply frames to one ZAP request (RFC 27)."""
        if len(frames) < 6:
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism, *credentials = frames
        try:
            allowed = self._allowed_key()
        except (OSError, JoinTokenError) as exc:
            log.error("cannot read the join token %s: %s; refusing every generator", self.token_path, exc)
            allowed = None
        if (version == b"1.0" and mechanism == b"CURVE" and credentials and allowed is not None
                and hmac.compare_digest(credentials[0], allowed)):
            return [b"1.0", request_id, b"200", b"OK", b"fleet", b""]
        self._refuse(f"{address.decode(errors='replace') or 'a peer'} without the fleet's join token")
        return [b"1.0", request_id, b"400", b"join token refused", b"", b""]

    def _refuse(self, description):
        self.refused += 1
        self._unlogged += 1
        self._latest_refusal = description
        self._log_refused()

    def _log_refused(self):
        now = self._clock()
        if not self._unlogged or (self._quiet_until is not None and now < self._quiet_until):
            return
        log.warning("refused %d generator connection(s) at the handshake; latest: %s",
                    self._unlogged, self._latest_refusal)
        self._unlogged = 0
        self._quiet_until = now + REFUSED_LOG_INTERVAL_S


def command(argv):
    """``python -m coordinator_app join-token``: print the fleet's join token (``--rotate``: a new one)."""
    parser = argparse.ArgumentParser(
        prog="python -m coordinator_app join-token",
        description="Print the join token generators need to connect to this coordinator, making the "
                    "coordinator's keys and the token first when the data directory has none.")
    parser.add_argument("--data-dir", default=os.environ.get("STRESSGRID_DATA_DIR", DEFAULT_DATA_DIR),
                        help="the coordinator's data directory (default ./stressgrid-data)")
    parser.add_argument("--rotate", action="store_true",
                        help="replace the token: generators holding the old one are refused from their "
                             "next connection on")
    args = parser.parse_args(argv)
    try:
        token = rotate(args.data_dir) if args.rotate else join_token(args.data_dir)
    except (FleetKeyError, OSError) as exc:
        raise SystemExit(f"join-token: {exc}") from None
    print(token.encode())
    return 0

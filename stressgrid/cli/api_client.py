"""A small client for the coordinator's JSON API (standard library only)."""
import json
import shutil
import urllib.error
import urllib.request

from .exits import EXIT_COORDINATOR, CliError

HTTP_TIMEOUT_S = 15.0
STREAM_TIMEOUT_S = 40.0  # the coordinator sends a keep-alive every 15 s at worst


class ApiError(Exception):
    """An HTTP error answer from the coordinator."""

    def __init__(self, status, body):
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        error = self.body.get("error") if isinstance(self.body.get("error"), dict) else {}
        self.error = error
        self.code = error.get("code")
        self.message = error.get("message") or (body if isinstance(body, str) else "") or \
            f"HTTP {status}"
        super().__init__(f"HTTP {status}: {self.message}")


class Api:
    """A small client for the coordinator's JSON API (stdlib only)."""

    def __init__(self, base_url, token=None):
        self.base_url = base_url.rstrip("/")
        self.token = token or None

    def _request(self, method, path, body=None, timeout=HTTP_TIMEOUT_S, accept="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", accept)
        request.add_header("User-Agent", "stressgrid-cli")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                decoded = json.loads(payload)
            except ValueError:  # not a coordinator's answer (an HTML error page...): one line
                decoded = " ".join(payload.decode("utf-8", "replace").split())[:200]
            if exc.code == 401:
                hint = "pass --token or set STRESSGRID_TOKEN" if not self.token else \
                    "check --token / STRESSGRID_TOKEN"
                raise CliError(EXIT_COORDINATOR, f"the coordinator at {self.base_url} refused "
                                                 f"the token (401): {hint}") from None
            raise ApiError(exc.code, decoded) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, OSError) and reason.strerror:
                reason = reason.strerror
            raise CliError(EXIT_COORDINATOR,
                           f"cannot reach the coordinator at {self.base_url}: {reason}") from None

    def call(self, method, path, body=None, timeout=HTTP_TIMEOUT_S):
        """The decoded JSON answer; raises ``ApiError`` or ``CliError``."""
        with self._request(method, path, body, timeout) as response:
            payload = response.read()
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise CliError(EXIT_COORDINATOR, f"{self.base_url}{path} did not answer JSON: is "
                                             f"this a Stressgrid coordinator?") from None

    def state(self):
        try:
            state = self.call("GET", "/api/state")
        except ApiError as exc:
            raise CliError(EXIT_COORDINATOR, f"{self.base_url}/api/state answered HTTP "
                                             f"{exc.status}: is this a Stressgrid coordinator?") \
                from None
        if not isinstance(state, dict) or "generators" not in state:
            raise CliError(EXIT_COORDINATOR, f"{self.base_url}/api/state did not answer a "
                                             f"coordinator state: is this a Stressgrid coordinator?")
        return state

    def states(self):
        """Server-sent ``state`` events from ``/api/stream``, decoded, as they come."""
        with self._request("GET", "/api/stream", timeout=STREAM_TIMEOUT_S,
                           accept="text/event-stream") as response:
            event, data = "message", []
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data and event == "state":
                        yield json.loads("\n".join(data))
                    event, data = "message", []
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)

    def download(self, path, destination):
        """Save the body of ``GET path`` to ``destination`` (a new file)."""
        with self._request("GET", path, timeout=60, accept="*/*") as response, \
                open(destination, "xb") as out:
            shutil.copyfileobj(response, out, 1 << 20)

# cython: freethreading_compatible = False
"""A sans-IO WebSocket (RFC 6455) endpoint: frames in, messages out.

``WebSocketCore`` parses what the socket read (``feed``), reassembles
fragmented messages, validates text as UTF-8, answers pings with pongs and
closes with the close handshake; whole messages wait in a bounded queue
(``next_message``): ``str`` for text, ``bytes`` for binary. When the queue is
full the oldest message is dropped and counted (``dropped`` and the optional
``ws_dropped_frame_count`` counter), never silently. ``send*`` queue frames,
masked with a fresh random key when the core is the client; everything the
core sends (those, and the pongs and close replies it makes by itself) is
taken from ``data_to_send``, as from the other protocol cores.

A peer that breaks the protocol makes ``feed`` raise ``WebSocketProtocolError`` (a
``RemoteProtocolError``) with its ``close_code`` (1002 protocol error, 1007 invalid UTF-8, 1009 too big); the
matching close frame is then waiting in ``data_to_send``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove

from stressgrid._core.metrics cimport Counter

import collections
import os

from stressgrid.errors import WebSocketProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

DEFAULT_MAX_MESSAGES = 1024
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Masking keys come from the OS's strong random source, read in bulk and
# shared by every connection of the process.
cdef bytes _mask_pool = b""
cdef Py_ssize_t _mask_offset = 0
cdef enum:
    MASK_POOL_SIZE = 8192
    MAX_CLOSE_REASON = 123


cdef inline uint32_t _next_mask() except? 0:
    global _mask_pool, _mask_offset
    cdef uint32_t key
    if _mask_offset + 4 > PyBytes_GET_SIZE(_mask_pool):
        _mask_pool = os.urandom(MASK_POOL_SIZE)
        _mask_offset = 0
    memcpy(&key, PyBytes_AS_STRING(_mask_pool) + _mask_offset, 4)
    _mask_offset += 4
    return key


cdef inline void _apply_mask(uint8_t *data, Py_ssize_t size, uint32_t key) noexcept nogil:
    # key holds the 4 mask bytes in memory order; XOR eight bytes at a time.
    cdef uint64_t wide = (<uint64_t>key << 32) | key
    cdef Py_ssize_t i = 0
    cdef uint64_t word
    cdef const uint8_t *k = <const uint8_t *>&key
    while i + 8 <= size:
        memcpy(&word, data + i, 8)
        word ^= wide
        memcpy(data + i, &word, 8)
        i += 8
    while i < size:
        data[i] ^= k[i & 3]
        i += 1


cdef inline bint _valid_close_code(int code) noexcept:
    if 1000 <= code <= 1003 or 1007 <= code <= 1014:
        return True
    return 3000 <= code <= 4999


def accept_key(key):
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key``."""
    import base64
    import hashlib
    if isinstance(key, bytes):
        key = key.decode("ascii")
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def new_key():
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes in base64."""
    import base64
    return base64.b64encode(os.urandom(16)).decode("ascii")


cdef bytes close_reason_bytes(str reason):
    # A close frame's payload is at most 125 bytes: the code, then up to 123 of
    # the reason in UTF-8, cut before a character that would not fit whole.
    cdef bytes encoded = reason.encode("utf-8")
    cdef Py_ssize_t end = PyBytes_GET_SIZE(encoded)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(encoded)
    if end <= MAX_CLOSE_REASON:
        return encoded
    end = MAX_CLOSE_REASON
    while end > 0 and (p[end] & 0xC0) == 0x80:
        end -= 1    # p[end] continues a character: cut before the character's first byte
    return encoded[:end]


cdef class WebSocketCore:
    """One WebSocket endpoint (the client unless ``client=False``); see the module doc."""

    def __cinit__(self, Py_ssize_t max_messages=DEFAULT_MAX_MESSAGES,
                  Py_ssize_t max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
                  Counter dropped_counter=None, bint client=True):
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.max_messages = max_messages
        self.max_message_size = max_message_size
        self.dropped_counter = dropped_counter
        self.client = client
        self.messages = collections.deque()
        self.out = None
        self.close_code = 0
        self.close_reason = None

    def __dealloc__(self):
        PyMem_Free(self.buf)

    # -- input ----------------------------------------------------------------

    cpdef Py_ssize_t feed(self, object data) except -1:
        """Take bytes read from the socket; returns how many messages were queued."""
        cdef const uint8_t *ptr
        cdef Py_ssize_t size, consumed, rest, before
        cdef uint8_t *grown
        if self.failed or self.close_received:
            return 0  # nothing after a close frame (or a failure) is read
        if type(data) is not bytes:
            data = bytes(data)
        ptr = <const uint8_t *>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
        before = len(self.messages) + self.dropped
        if self.buf_len == 0:
            # Nothing waiting: parse in place, keep only an unfinished frame.
            consumed = self._parse(ptr, size)
            rest = size - consumed
            if rest > 0 and not (self.close_received or self.failed):
                self._keep(ptr + consumed, rest)
        else:
            self._keep(ptr, size)
            consumed = self._parse(self.buf, self.buf_len)
            if self.close_received or self.failed:
                self.buf_len = 0
            elif consumed:
                memmove(self.buf, self.buf + consumed, self.buf_len - consumed)
                self.buf_len -= consumed
        if self.buf_cap > 65536 and self.buf_len < 4096:
            # A large frame went through: give its buffer back.
            grown = <uint8_t *>PyMem_Realloc(self.buf, 4096)
            if grown != NULL:
                self.buf = grown
                self.buf_cap = 4096
        return len(self.messages) + self.dropped - before

    cdef int _keep(self, const uint8_t *data, Py_ssize_t size) except -1:
        cdef Py_ssize_t needed = self.buf_len + size
        cdef Py_ssize_t cap
        cdef uint8_t *grown
        if needed > self.buf_cap:
            cap = self.buf_cap * 2 if self.buf_cap * 2 > needed else needed
            if cap < 4096:
                cap = 4096
            grown = <uint8_t *>PyMem_Realloc(self.buf, cap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.buf_cap = cap
        memcpy(self.buf + self.buf_len, data, size)
        self.buf_len = needed
        return 0

    cdef Py_ssize_t _parse(self, const uint8_t *data, Py_ssize_t length) except -1:
        """Handle every whole frame at ``data``; returns the bytes used."""
        cdef Py_ssize_t pos = 0, header
        cdef uint8_t b0, b1
        cdef uint64_t size
        cdef bint masked
        cdef int opcode
        cdef uint32_t key
        cdef bytes unmasked
        cdef int i
        while not self.close_received and not self.failed:
            if length - pos < 2:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            masked = (b1 & 0x80) != 0
            size = b1 & 0x7F
            header = 2
            if size == 126:
                if length - pos < 4:
                    break
                size = (<uint64_t>data[pos + 2] << 8) | data[pos + 3]
                header = 4
            elif size == 127:
                if length - pos < 10:
                    break
                size = 0
                for i in range(8):
                    size = (size << 8) | data[pos + 2 + i]
                header = 10
                if size >> 63:
                    self._fail(CLOSE_PROTOCOL_ERROR, "WebSocket frame length has its top bit set")
            if b0 & 0x70:
                self._fail(CLOSE_PROTOCOL_ERROR, "WebSocket frame with reserved bits set (no extension was agreed)")
            if masked == self.client:
                self._fail(CLOSE_PROTOCOL_ERROR,
                           "masked WebSocket frame from the server" if self.client
                           else "unmasked WebSocket frame from the client")
            if opcode >= 8:
                if opcode > OP_PONG:
                    self._fail(CLOSE_PROTOCOL_ERROR, f"WebSocket frame with unknown opcode {opcode}")
                if not (b0 & 0x80):
                    self._fail(CLOSE_PROTOCOL_ERROR, "fragmented WebSocket control frame")
                if size > 125:
                    self._fail(CLOSE_PROTOCOL_ERROR, "WebSocket control frame longer than 125 bytes")
            elif opcode > OP_BINARY:
                self._fail(CLOSE_PROTOCOL_ERROR, f"WebSocket frame with unknown opcode {opcode}")
            elif size > <uint64_t>(self.max_message_size - self.frag_size):
                self._fail(CLOSE_TOO_BIG,
                           f"WebSocket message over the {self.max_message_size}-byte limit")
            if masked:
                header += 4
            if <uint64_t>(length - pos - header) < size:
                break  # the rest of the frame has not arrived
            if masked:
                memcpy(&key, data + pos + header - 4, 4)
                # A fresh object (NULL source): short bytes from a copy may be
                # shared interpreter singletons, which must never be written to.
                unmasked = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>size)
                memcpy(PyBytes_AS_STRING(unmasked), data + pos + header, <size_t>size)
                _apply_mask(<uint8_t *>PyBytes_AS_STRING(unmasked), <Py_ssize_t>size, key)
                self._frame((b0 & 0x80) != 0, opcode, <const uint8_t *>PyBytes_AS_STRING(unmasked),
                            <Py_ssize_t>size)
            else:
                self._frame((b0 & 0x80) != 0, opcode, data + pos + header, <Py_ssize_t>size)
            pos += header + <Py_ssize_t>size
        return pos

    cdef int _frame(self, bint fin, int opcode, const uint8_t *payload, Py_ssize_t size) except -1:
        if opcode == OP_PING:
            self.pings_received += 1
            if not self.close_sent:
                self._queue(self._encode(OP_PONG, PyBytes_FromStringAndSize(<const char *>payload, size), True))
            return 0
        if opcode == OP_PONG:
            return 0
        if opcode == OP_CLOSE:
            return self._close_frame(payload, size)
        if opcode == OP_CONTINUATION:
            if self.frag_opcode == 0:
                self._fail(CLOSE_PROTOCOL_ERROR, "WebSocket continuation frame without a message to continue")
            self.frag_parts.append(PyBytes_FromStringAndSize(<const char *>payload, size))
            self.frag_size += size
            if fin:
                opcode = self.frag_opcode
                parts = self.frag_parts
                self.frag_opcode = 0
                self.frag_parts = None
                self.frag_size = 0
                return self._message(opcode, b"".join(parts))
            return 0
        # A new text or binary message.
        if self.frag_opcode != 0:
            self._fail(CLOSE_PROTOCOL_ERROR, "new WebSocket message before the fragmented one ended")
        if fin:
            if opcode == OP_TEXT:
                try:
                    text = PyUnicode_DecodeUTF8(<const char *>payload, size, NULL)
                except UnicodeDecodeError:
                    self._fail(CLOSE_INVALID_DATA, "WebSocket text message is not valid UTF-8")
                return self._message(0, text)
            return self._message(OP_BINARY, PyBytes_FromStringAndSize(<const char *>payload, size))
        self.frag_opcode = opcode
        self.frag_parts = [PyBytes_FromStringAndSize(<const char *>payload, size)]
        self.frag_size = size
        return 0

    cdef int _message(self, int opcode, object payload) except -1:
        # opcode 0: payload is already text; OP_TEXT: UTF-8 bytes to check.
        cdef object messages = self.messages
        if opcode == OP_TEXT:
            try:
                payload = (<bytes>payload).decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "WebSocket text message is not valid UTF-8")
        if len(messages) >= self.max_messages:
            messages.popleft()
            self.dropped += 1
            if self.dropped_counter is not None:
                self.dropped_counter.value += 1
        messages.append(payload)
        return 0

    cdef int _close_frame(self, const uint8_t *payload, Py_ssize_t size) except -1:
        cdef int code = 1005  # "no status received"
        reason = ""
        if size == 1:
            self._fail(CLOSE_PROTOCOL_ERROR, "WebSocket close frame with a 1-byte payload")
        if size >= 2:
            code = (payload[0] << 8) | payload[1]
            if not _valid_close_code(code):
                self._fail(CLOSE_PROTOCOL_ERROR, f"WebSocket close frame with invalid code {code}")
            try:
                reason = PyUnicode_DecodeUTF8(<const char *>payload + 2, size - 2, NULL)
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "WebSocket close reason is not valid UTF-8")
        self.close_received = True
        self.close_code = code
        self.close_reason = reason
        if not self.close_sent:
            # Answer the close handshake, echoing the code.
            self._queue(self._encode_close(code if size >= 2 else 0, ""))
        return 0

    cdef int _fail(self, int code, str message) except -1:
        self.failed = True
        self.frag_parts = None
        if not self.close_sent:
            self._queue(self._encode_close(code, ""))
        raise WebSocketProtocolError(message, code)

    cdef int _queue(self, bytes frame) except -1:
        cdef object out = self.out
        if out is None:
            self.out = frame    # the common case, one frame: no list
        elif type(out) is bytes:
            self.out = [out, frame]
        else:
            (<list>out).append(frame)
        return 0

    # -- output ---------------------------------------------------------------

    cpdef object next_message(self):
        """The oldest queued message (``str`` or ``bytes``), or ``None``."""
        if self.messages:
            return self.messages.popleft()
        return None

    cdef bytes _encode(self, int opcode, bytes payload, bint fin):
        """One frame; masked when this core is the client."""
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t header = 2
        cdef uint32_t key = 0
        cdef bytes frame
        cdef uint8_t *out
        cdef int i
        if size >= 65536:
            header = 10
        elif size >= 126:
            header = 4
        if self.client:
            header += 4
        frame = PyBytes_FromStringAndSize(NULL, header + size)
        out = <uint8_t *>PyBytes_AS_STRING(frame)
        out[0] = (0x80 if fin else 0) | (opcode & 0x0F)
        if size >= 65536:
            out[1] = 127
            for i in range(8):
                out[2 + i] = (<uint64_t>size >> (56 - 8 * i)) & 0xFF
        elif size >= 126:
            out[1] = 126
            out[2] = (size >> 8) & 0xFF
            out[3] = size & 0xFF
        else:
            out[1] = <uint8_t>size
        memcpy(out + header, PyBytes_AS_STRING(payload), size)
        if self.client:
            out[1] |= 0x80
            key = _next_mask()
            memcpy(out + header - 4, &key, 4)
            _apply_mask(out + header, size, key)
        return frame

    cpdef send_text(self, str text):
        """Queue a text message."""
        self._queue(self._encode(OP_TEXT, PyUnicode_AsUTF8String(text), True))

    cpdef send_binary(self, bytes data):
        """Queue a binary message."""
        self._queue(self._encode(OP_BINARY, data, True))

    def send_fragments(self, message, Py_ssize_t fragment_size):
        """Queue ``message`` (``str`` or ``bytes``) as frames of at most ``fragment_size`` bytes."""
        cdef int opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        cdef bytes payload = message.encode("utf-8") if opcode == OP_TEXT else bytes(message)
        cdef Py_ssize_t start = 0, size = len(payload)
        if fragment_size < 1:
            raise ValueError("fragment_size must be at least 1")
        while True:
            end = min(start + fragment_size, size)
            self._queue(self._encode(opcode if start == 0 else OP_CONTINUATION, payload[start:end], end >= size))
            start = end
            if start >= size:
                return

    def send_ping(self, bytes payload=b""):
        """Queue a ping."""
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        self._queue(self._encode(OP_PING, payload, True))

    def send_close(self, int code=CLOSE_NORMAL, str reason=""):
        """Queue the close frame (``code`` 0: none); after it this side sends nothing more."""
        self._queue(self._encode_close(code, reason))

    cdef bytes _encode_close(self, int code, str reason):
        cdef bytes payload = b""
        if code:
            payload = bytes(((code >> 8) & 0xFF, code & 0xFF)) + close_reason_bytes(reason)
        self.close_sent = True
        return self._encode(OP_CLOSE, payload, True)

    cpdef bytes data_to_send(self):
        """Every frame queued (by ``send*``, and the pongs and close replies the core made by
        itself), in order, to write now; ``b""`` when there are none."""
        cdef object out = self.out
        if out is None:
            return b""
        self.out = None
        if type(out) is bytes:
            return <bytes>out
        return b"".join(<list>out)

    @property
    def closed(self):
        """Both close frames went (or the connection failed): nothing more will flow."""
        return self.failed or (self.close_sent and self.close_received)

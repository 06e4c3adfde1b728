# cython: freethreading_compatible = False
"""A response's headers as scripts see them: ``(name, value)`` string pairs, decoded on read.

The HTTP/1 core packs a response's header fields into one bytes object while llhttp hands
them over (``headers.pxd``); most scripts never read them, so a response costs no string
and no tuple per field. ``ResponseHeaders`` is a read-only sequence of the pairs, in the
order the server sent them, decoded the first time it is read; ``get(name)`` finds a
field's value whatever the name's case, without decoding the others. HTTP/2 streams, whose
fields come decoded from HPACK, hand over their list of pairs in the same type.
"""
from collections.abc import Sequence

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from stressgrid._core.header_cache cimport header_pair, latin1, new_header_cache
from stressgrid._core.request cimport same_caseless

from stressgrid.errors import RemoteProtocolError

cdef list _header_cache = new_header_cache()   # decoded header pairs (header_cache.pxd)


cdef object block_error(int failed):
    """The exception for what ``block_piece`` or ``block_field_done`` failed with."""
    if failed == -1:
        return RemoteProtocolError(f"the response's header fields exceed {HEADER_BLOCK_LIMIT} bytes")
    return MemoryError()


cdef ResponseHeaders take_block(HeaderBlock *block):
    """The block's complete entries as a ``ResponseHeaders``; the block is cleared."""
    cdef ResponseHeaders headers = ResponseHeaders.__new__(ResponseHeaders)
    headers.packed = PyBytes_FromStringAndSize(block.data, block.size if block.entry < 0 else block.entry)
    headers.size = block.count
    block_clear(block)
    return headers


cdef ResponseHeaders headers_of_pairs(list pairs):
    """Pairs already decoded (HTTP/2's) as a ``ResponseHeaders``."""
    cdef ResponseHeaders headers = ResponseHeaders.__new__(ResponseHeaders)
    headers.pairs = pairs
    headers.size = len(pairs)
    return headers


cdef inline const char *_entry(const char *at, uint32_t *name_size, uint32_t *value_size) noexcept:
    # The packed entry at ``at``: its lengths, and where its name starts (its value follows).
    memcpy(name_size, at, 4)
    memcpy(value_size, at + 4, 4)
    return at + ENTRY_LENGTHS


cdef class ResponseHeaders:
    """The response's ``(name, value)`` pairs (strings, as the server sent them; a name may
    repeat): index, iterate, ``len``, compare with a list of pairs, ``dict(headers)``, or
    ``headers.get(name)``."""

    def __init__(self, pairs=()):
        self.pairs = [(str(name), str(value)) for name, value in pairs]
        self.size = len(self.pairs)

    cdef list decoded(self):
        cdef list pairs = self.pairs
        cdef const char *at
        cdef const char *end
        cdef uint32_t n, m
        if pairs is not None:
            return pairs
        pairs = []
        at = PyBytes_AS_STRING(self.packed)
        end = at + PyBytes_GET_SIZE(self.packed)
        while at < end:
            at = _entry(at, &n, &m)
            pairs.append(header_pair(_header_cache, at, n, at + n, m))
            at += n + m
        self.pairs = pairs
        self.packed = None
        return pairs

    def get(self, str name not None, default=None):
        """The value of the first field called ``name`` (any case), else ``default``."""
        cdef const char *at
        cdef const char *end
        cdef uint32_t n, m
        cdef bytes wanted
        if self.packed is None:
            lowered = name.lower()
            for field, value in self.pairs:
                if field.lower() == lowered:
                    return value
            return default
        try:
            wanted = name.encode("latin-1")
        except UnicodeEncodeError:
            return default
        at = PyBytes_AS_STRING(self.packed)
        end = at + PyBytes_GET_SIZE(self.packed)
        while at < end:
            at = _entry(at, &n, &m)
            if n == PyBytes_GET_SIZE(wanted) and same_caseless(at, PyBytes_AS_STRING(wanted), n):
                return latin1(at + n, m)
            at += n + m
        return default

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return self.decoded()[index]

    def __iter__(self):
        return iter(self.decoded())

    def __reversed__(self):
        return reversed(self.decoded())

    def __contains__(self, pair):
        return pair in self.decoded()

    def index(self, pair, *args):
        return self.decoded().index(pair, *args)

    def count(self, pair):
        return self.decoded().count(pair)

    def __eq__(self, other):
        if isinstance(other, ResponseHeaders):
            return self.decoded() == (<ResponseHeaders>other).decoded()
        if isinstance(other, (list, tuple)):
            return self.decoded() == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(self.decoded())

    def __reduce__(self):
        return (ResponseHeaders, (self.decoded(),))


Sequence.register(ResponseHeaders)

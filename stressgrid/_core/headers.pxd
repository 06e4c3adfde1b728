# A response's header fields: packed raw while a protocol core parses them, decoded to
# ``(name, value)`` strings only when a script reads them (``ResponseHeaders``).
#
# ``HeaderBlock`` is the packing buffer: entries of a 4-byte name length, a 4-byte value
# length, then the name's and the value's bytes. A core appends a field's name and value as
# its parser hands them over, in as many pieces as the reads cut them into, then takes the
# whole block as one ``ResponseHeaders`` (one bytes object, no object per field). The
# functions here are inline: each core compiles them in.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.stdlib cimport realloc
from libc.string cimport memcpy

cdef enum:
    ENTRY_LENGTHS = 8                 # the two uint32 lengths before an entry's bytes
    HEADER_BLOCK_LIMIT = 1 << 20      # bytes of one response's header fields, at most


cdef struct HeaderBlock:
    char *data
    Py_ssize_t size
    Py_ssize_t capacity
    Py_ssize_t count          # complete entries
    Py_ssize_t entry          # where the entry being read starts; -1 between entries


cdef class ResponseHeaders:
    cdef bytes packed         # the block's entries
    cdef Py_ssize_t size       # how many pairs
    cdef list pairs           # the decoded ``(name, value)`` pairs, once read
    cdef list decoded(self)


cdef ResponseHeaders take_block(HeaderBlock *block)
cdef ResponseHeaders headers_of_pairs(list pairs)
cdef object block_error(int failed)


cdef inline int _reserve(HeaderBlock *block, Py_ssize_t more) noexcept:
    # 0, or -1 when the block would pass HEADER_BLOCK_LIMIT, -2 when memory runs out.
    cdef Py_ssize_t wanted = block.size + more
    cdef Py_ssize_t capacity = block.capacity
    cdef char *grown
    if wanted <= capacity:
        return 0
    if wanted > HEADER_BLOCK_LIMIT:
        return -1
    if capacity < 1024:
        capacity = 1024
    while capacity < wanted:
        capacity *= 2
    grown = <char *>realloc(block.data, capacity)
    if grown == NULL:
        return -2
    block.data = grown
    block.capacity = capacity
    return 0


cdef inline int block_piece(HeaderBlock *block, const char *at, Py_ssize_t size, bint value) noexcept:
    """A piece of the current field's name (``value`` false) or value; 0, or what
    ``_reserve`` failed with (``block_error`` makes it an exception)."""
    cdef uint32_t length
    cdef Py_ssize_t slot
    cdef int failed
    if block.entry < 0:
        failed = _reserve(block, ENTRY_LENGTHS + size)
        if failed:
            return failed
        block.entry = block.size
        length = 0
        memcpy(block.data + block.size, &length, 4)
        memcpy(block.data + block.size + 4, &length, 4)
        block.size += ENTRY_LENGTHS
    else:
        failed = _reserve(block, size)
        if failed:
            return failed
    slot = block.entry + (4 if value else 0)
    memcpy(&length, block.data + slot, 4)
    length += <uint32_t>size
    memcpy(block.data + slot, &length, 4)
    memcpy(block.data + block.size, at, size)
    block.size += size
    return 0


cdef inline int block_field_done(HeaderBlock *block, const char **name, Py_ssize_t *name_size,
                                 const char **value, Py_ssize_t *value_size) noexcept:
    """The current field is whole: where its name and value lie in the block (valid until
    the next piece); 0, or as ``block_piece``."""
    cdef uint32_t n, m
    cdef int failed
    if block.entry < 0:
        failed = block_piece(block, b"", 0, False)   # a field the parser gave no bytes of
        if failed:
            return failed
    memcpy(&n, block.data + block.entry, 4)
    memcpy(&m, block.data + block.entry + 4, 4)
    name[0] = block.data + block.entry + ENTRY_LENGTHS
    name_size[0] = n
    value[0] = name[0] + n
    value_size[0] = m
    block.entry = -1
    block.count += 1
    return 0


cdef inline void block_clear(HeaderBlock *block) noexcept:
    block.size = 0
    block.count = 0
    block.entry = -1


cdef inline bytes block_keep(HeaderBlock *block, Py_ssize_t *count, Py_ssize_t *entry):
    """What the block holds, when a read ends inside a response's header fields: a core
    keeps it (the block serves every connection of the module) and the block is cleared."""
    cdef bytes kept = PyBytes_FromStringAndSize(block.data, block.size)
    count[0] = block.count
    entry[0] = block.entry
    block_clear(block)
    return kept


cdef inline int block_restore(HeaderBlock *block, bytes kept, Py_ssize_t count, Py_ssize_t entry) except -1:
    """Put back what ``block_keep`` took."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(kept)
    if _reserve(block, size):
        raise MemoryError()   # it fitted before
    memcpy(block.data, PyBytes_AS_STRING(kept), size)
    block.size = size
    block.count = count
    block.entry = entry
    return 0

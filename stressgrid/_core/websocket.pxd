from libc.stdint cimport int64_t, uint8_t

from stressgrid._core.metrics cimport Counter


cdef class WebSocketCore:
    cdef uint8_t *buf
    cdef Py_ssize_t buf_len
    cdef Py_ssize_t buf_cap
    cdef readonly object messages
    cdef readonly Py_ssize_t max_messages
    cdef readonly Py_ssize_t max_message_size
    cdef readonly int64_t dropped
    cdef readonly int64_t pings_received
    cdef readonly bint client
    cdef readonly bint close_sent
    cdef readonly bint close_received
    cdef readonly bint failed
    cdef readonly int close_code
    cdef readonly str close_reason
    cdef Counter dropped_counter
    cdef int frag_opcode
    cdef list frag_parts
    cdef Py_ssize_t frag_size
    cdef object out    # what waits for data_to_send: None, one frame (bytes) or a list of frames

    cpdef Py_ssize_t feed(self, object data) except -1
    cdef int _keep(self, const uint8_t *data, Py_ssize_t size) except -1
    cdef Py_ssize_t _parse(self, const uint8_t *data, Py_ssize_t length) except -1
    cdef int _frame(self, bint fin, int opcode, const uint8_t *payload, Py_ssize_t size) except -1
    cdef int _message(self, int opcode, object payload) except -1
    cdef int _close_frame(self, const uint8_t *payload, Py_ssize_t size) except -1
    cdef int _queue(self, bytes frame) except -1
    cdef bytes _encode(self, int opcode, bytes payload, bint fin)
    cdef bytes _encode_close(self, int code, str reason)
    cdef int _fail(self, int code, str message) except -1
    cpdef object next_message(self)
    cpdef send_text(self, str text)
    cpdef send_binary(self, bytes data)
    cpdef bytes data_to_send(self)

from stressgrid._core.device cimport Device
from stressgrid._core.http2 cimport Http2Connection, Http2Stream
from stressgrid._core.metrics cimport RequestGroup


cdef class ProtocolBase

# The per-request path of the HTTP/2 asyncio layer (stressgrid.protocols.http2), compiled:
# a request submitted on the open connection, a response handed to its script. Connecting,
# resends, deadlines and failures are in the Python subclasses.
cdef class ClientBase:
    cdef public Device device
    cdef public object loop
    cdef public object recorder
    cdef public ProtocolBase protocol     # the open connection, if any

    cdef object request_c(self, bytes method, path, headers, body, bytes content_type, timeout,
                          RequestGroup group)
    # Hooks the compiled path calls; Http2Client implements them.
    cpdef object request_on_new_connection(self, bytes method, bytes path, headers, body, content_type,
                                           double seconds, group)
    cpdef resend(self, request)


cdef class ProtocolBase:
    cdef public ClientBase client
    cdef public Http2Connection core
    cdef public object transport
    cdef public object timer              # the connection's DeadlineTimer, made with the first request
    cdef public object lost_exc           # why the transport was lost (connection_lost's reason)
    cdef public object failure            # the error ``fail`` counted, when the connection failed
    cdef public bint lost

    cdef object submit_c(self, bytes method, bytes path, headers, body, content_type, double timeout_s,
                         bint retried, group)
    cdef int flush_c(self) except -1
    cdef int complete_c(self, Http2Stream stream) except -1
    # Hook: the connection is broken (Python).
    cpdef fail(self, exc)

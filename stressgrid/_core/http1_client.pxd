from libc.stdint cimport int64_t

from stressgrid._core.deadline cimport DeadlineTimer
from stressgrid._core.device cimport Device
from stressgrid._core.http1 cimport Http1Core, RequestWriter
from stressgrid._core.metrics cimport RequestGroup


cdef class ConnectionBase

# The per-request path of the asyncio layer (stressgrid.protocols.http1), compiled:
# sending on an open connection and completing a response. Connecting, timeouts,
# losses, retries and upgrades are in the Python subclasses.
cdef class ClientBase:
    cdef public object recorder
    cdef public object loop
    cdef public RequestWriter writer
    cdef public ConnectionBase conn      # the open connection, if any
    cdef public ConnectionBase inflight  # the connection whose response is due
    cdef public DeadlineTimer timer      # the device's one deadline timer, while requests come
    cdef readonly int64_t deadline_us   # when the response in flight is due
    cdef public double budget_s
    cdef public double timeout_s
    cdef public bint closed
    cdef public bint connecting
    cdef public object ws
    cdef public RequestGroup group       # the name the request in flight was given, if any
    cdef public Device device            # whose steps the requests are (``Device.record_intended``)

    cdef object request_c(self, bytes method, path, headers, body, bytes content_type, timeout,
                          RequestGroup group)
    cpdef object send(self, ConnectionBase conn, object waiter, bytes data, int flags,
                      int64_t deadline_us, double budget_s)
    cdef int arm_c(self, int64_t deadline_us) except -1
    # Hooks the compiled path calls; Http1Client implements them.
    cpdef object request_slow(self, bytes data, int flags, double budget_s)
    cpdef on_deadline(self)


cdef class ConnectionBase:
    cdef public Http1Core core
    cdef public ClientBase client
    cdef public object transport
    cdef public object waiter            # the script's future while a response is due
    cdef public bytes request            # a request that may go out once more
    cdef readonly int flags              # REQUEST_HEAD, REQUEST_CLOSE of the request in flight
    cdef readonly bint reused            # the request went on a connection that had served one
    cdef readonly bint upgraded          # a 101 came: the connection is no longer HTTP
    cdef public bint lost

    cpdef complete(self)
    # Hooks the compiled path calls; _Connection implements them.
    cpdef idle_data(self, data)
    cpdef fail(self, exc)
    cpdef discard(self, bint abort)

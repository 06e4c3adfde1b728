from stressgrid._core.websocket cimport WebSocketCore


# How a received message reaches the script (ws_receive_text, _binary, _json).
cdef enum MessageAs:
    AS_TEXT = 0
    AS_BINARY = 1
    AS_JSON = 2


# The per-message path of the WebSocket connection (stressgrid.protocols.websocket),
# compiled: a message in, a message out. The rest is in its Python subclass.
cdef class ConnectionBase:
    cdef public WebSocketCore core
    cdef public object loop
    cdef public object recorder
    cdef public object transport
    cdef public object waiter           # the Pending of the receive that waits...
    cdef public int receive_as          # ...and how its message is handed over (MessageAs)
    cdef public double budget_s
    cdef public object timer            # the receives' DeadlineTimer, made with the first that waits
    cdef public object sent             # a done Pending: what a send that need not wait returns
    cdef public object drain_waiters    # sends waiting while the transport's buffer is full
    cdef public object failure          # the RemoteProtocolError that ended the connection, until raised
    cdef public object lost_exc
    cdef public bint lost
    cdef public bint paused

    cdef bint ended_c(self)
    cdef _write(self, data)
    cpdef _wake(self, bint now=*)
    cpdef object send(self, bint binary, message)
    cpdef object receive(self, int receive_as, double timeout_s)
    # Hooks the compiled path calls; WebSocketConnection implements them.
    cpdef _shut(self)
    cpdef _closed_error(self)

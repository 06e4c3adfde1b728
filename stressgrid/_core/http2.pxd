from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from stressgrid._core.metrics cimport Histogram, ResponseCounters


cdef extern from "nghttp2/nghttp2.h":
    ctypedef struct nghttp2_session:
        pass
    ctypedef struct nghttp2_session_callbacks:
        pass

    ctypedef struct nghttp2_frame_hd:
        size_t length
        int32_t stream_id
        uint8_t type
        uint8_t flags

    ctypedef struct nghttp2_headers:
        nghttp2_frame_hd hd
        int cat

    ctypedef struct nghttp2_rst_stream:
        nghttp2_frame_hd hd
        uint32_t error_code

    ctypedef struct nghttp2_goaway:
        nghttp2_frame_hd hd
        int32_t last_stream_id
        uint32_t error_code

    ctypedef union nghttp2_frame:
        nghttp2_frame_hd hd
        nghttp2_headers headers
        nghttp2_rst_stream rst_stream
        nghttp2_goaway goaway

    ctypedef struct nghttp2_nv:
        uint8_t *name
        uint8_t *value
        size_t namelen
        size_t valuelen
        uint8_t flags

    ctypedef union nghttp2_data_source:
        int fd
        void *ptr

    ctypedef ssize_t (*nghttp2_data_source_read_callback)(
        nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
        uint32_t *data_flags, nghttp2_data_source *source, void *user_data)

    ctypedef struct nghttp2_data_provider:
        nghttp2_data_source source
        nghttp2_data_source_read_callback read_callback

    ctypedef struct nghttp2_settings_entry:
        int32_t settings_id
        uint32_t value

    ctypedef int (*nghttp2_on_frame_recv_callback)(
        nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
    ctypedef int (*nghttp2_on_data_chunk_recv_callback)(
        nghttp2_session *session, uint8_t flags, int32_t stream_id,
        const uint8_t *data, size_t len, void *user_data)
    ctypedef int (*nghttp2_on_stream_close_callback)(
        nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
    ctypedef int (*nghttp2_error_callback2)(
        nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
        void *user_data)
    ctypedef int (*nghttp2_on_header_callback)(
        nghttp2_session *session, const nghttp2_frame *frame,
        const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
        uint8_t flags, void *user_data)

    enum:
        NGHTTP2_ERR_CALLBACK_FAILURE
        NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE

    enum:
        NGHTTP2_DATA
        NGHTTP2_HEADERS
        NGHTTP2_RST_STREAM
        NGHTTP2_SETTINGS
        NGHTTP2_GOAWAY

    enum:
        NGHTTP2_FLAG_NONE
        NGHTTP2_FLAG_END_STREAM

    enum:
        NGHTTP2_NV_FLAG_NONE

    enum:
        NGHTTP2_DATA_FLAG_EOF

    enum:
        NGHTTP2_SETTINGS_ENABLE_PUSH
        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE

    enum:
        NGHTTP2_NO_ERROR
        NGHTTP2_INTERNAL_ERROR
        NGHTTP2_REFUSED_STREAM
        NGHTTP2_CANCEL

    int nghttp2_session_callbacks_new(nghttp2_session_callbacks **callbacks_ptr)
    void nghttp2_session_callbacks_del(nghttp2_session_callbacks *callbacks)
    void nghttp2_session_callbacks_set_on_frame_recv_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_frame_recv_callback cb)
    void nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_data_chunk_recv_callback cb)
    void nghttp2_session_callbacks_set_on_stream_close_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_stream_close_callback cb)
    void nghttp2_session_callbacks_set_on_header_callback(
        nghttp2_session_callbacks *cbs, nghttp2_on_header_callback cb)
    void nghttp2_session_callbacks_set_error_callback2(
        nghttp2_session_callbacks *cbs, nghttp2_error_callback2 cb)

    int nghttp2_session_client_new(nghttp2_session **session_ptr,
                                   const nghttp2_session_callbacks *callbacks, void *user_data)
    void nghttp2_session_del(nghttp2_session *session)
    ssize_t nghttp2_session_mem_recv(nghttp2_session *session, const uint8_t *data, size_t inlen)
    ssize_t nghttp2_session_mem_send(nghttp2_session *session, const uint8_t **data_ptr)
    int nghttp2_session_want_read(nghttp2_session *session)
    int nghttp2_session_check_request_allowed(nghttp2_session *session)
    void *nghttp2_session_get_stream_user_data(nghttp2_session *session, int32_t stream_id)
    int nghttp2_session_set_local_window_size(nghttp2_session *session, uint8_t flags,
                                              int32_t stream_id, int32_t window_size)
    int32_t nghttp2_submit_request(nghttp2_session *session, const void *pri_spec,
                                   const nghttp2_nv *nva, size_t nvlen,
                                   const nghttp2_data_provider *data_prd, void *stream_user_data)
    int nghttp2_submit_settings(nghttp2_session *session, uint8_t flags,
                                const nghttp2_settings_entry *iv, size_t niv)
    int nghttp2_submit_rst_stream(nghttp2_session *session, uint8_t flags,
                                  int32_t stream_id, uint32_t error_code)
    int nghttp2_session_terminate_session(nghttp2_session *session, uint32_t error_code)
    const char *nghttp2_strerror(int lib_error_code)


cdef class Http2Stream:
    cdef readonly int32_t stream_id
    cdef readonly int status
    cdef readonly list headers
    cdef readonly object content_type
    cdef int body_kind
    cdef readonly uint32_t error_code
    cdef readonly bint complete
    cdef readonly bint closed
    cdef readonly bint response_started
    cdef readonly bint cancelled
    cdef public object user
    cdef public int64_t deadline_us
    cdef list chunks
    cdef bytes request_body
    cdef Py_ssize_t body_offset
    cdef readonly int64_t started_us      # submitted, on the monotonic clock (us)
    cdef readonly int64_t headers_at_us   # its response headers came


cdef class PendingRequest:
    cdef readonly object future
    cdef readonly bytes method
    cdef readonly object path
    cdef readonly object headers
    cdef readonly object body
    cdef readonly object content_type
    cdef readonly double timeout_s
    cdef readonly bint retried
    cdef readonly object group


cdef class Http2Connection:
    cdef nghttp2_session *session
    cdef readonly dict streams
    cdef list finished
    cdef object error
    cdef uint8_t *out
    cdef size_t out_len
    cdef size_t out_cap
    cdef readonly bytes authority
    cdef readonly bytes scheme
    cdef readonly bint terminated
    cdef readonly str library_error
    cdef readonly bint goaway_received
    cdef readonly int32_t goaway_last_stream_id
    cdef Histogram headers_histogram
    cdef Histogram body_histogram
    cdef ResponseCounters responses

    cpdef Http2Stream request(self, bytes method, bytes path, object headers, bytes body, object user,
                              bytes content_type=*)
    cpdef Py_ssize_t feed(self, object data) except -1
    cpdef bytes data_to_send(self)
    cpdef object take_finished(self)
    cdef int _drain(self) except -1
    cdef void _finish(self, Http2Stream stream) noexcept

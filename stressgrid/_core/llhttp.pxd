# The parts of llhttp's C API (llhttp.h, Debian's node-llhttp) that the HTTP/1 core uses.
from libc.stdint cimport uint8_t, uint16_t


cdef extern from "llhttp.h":
    ctypedef struct llhttp_t:
        void *data
        uint8_t upgrade
        uint16_t status_code

    ctypedef int (*llhttp_data_cb)(llhttp_t *parser, const char *at, size_t length) noexcept
    ctypedef int (*llhttp_cb)(llhttp_t *parser) noexcept

    ctypedef struct llhttp_settings_t:
        llhttp_cb on_message_begin
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete
        llhttp_cb on_header_value_complete

    ctypedef enum llhttp_type_t:
        HTTP_RESPONSE

    ctypedef enum llhttp_errno_t:
        HPE_OK
        HPE_USER
        HPE_PAUSED_UPGRADE

    void llhttp_settings_init(llhttp_settings_t *settings)
    void llhttp_init(llhttp_t *parser, llhttp_type_t type, const llhttp_settings_t *settings)
    llhttp_errno_t llhttp_execute(llhttp_t *parser, const char *data, size_t length)
    int llhttp_should_keep_alive(const llhttp_t *parser)
    const char *llhttp_get_error_reason(const llhttp_t *parser)
    const char *llhttp_get_error_pos(const llhttp_t *parser)
    const char *llhttp_errno_name(llhttp_errno_t err)

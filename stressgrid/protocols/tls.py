"""Client TLS contexts, one per (verify, CA file, ALPN) combination per process.

Certificate verification is off by default: targets under test commonly use
self-signed certificates. With ``opts.tls_verify`` the target's certificate
and host name are checked against ``opts.tls_ca_file`` (or the system store).
"""
import ssl

_contexts = {}


def client_context(verify=False, ca_file="", alpn=("http/1.1",)):
    """The shared client ``SSLContext`` for these settings.

    Raises ``OSError`` or ``ssl.SSLError`` when ``ca_file`` cannot be loaded.
    """
    key = (bool(verify), ca_file or "", tuple(alpn))
    context = _contexts.get(key)
    if context is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_default_certs()
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if alpn:
            context.set_alpn_protocols(list(alpn))
        _contexts[key] = context
    return context


def context_for(opts, alpn):
    """``client_context`` for a plan's ``opts`` (``tls_verify``, ``tls_ca_file``)."""
    return client_context(getattr(opts, "tls_verify", False), getattr(opts, "tls_ca_file", ""), alpn)

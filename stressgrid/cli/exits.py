"""The CLI's exit codes, and the error that ends the command with one."""

EXIT_OK = 0
EXIT_RUN_ERRORS = 1  # devices counted errors during the run, or someone else aborted it
EXIT_USAGE = 2  # bad flags, missing/unreadable file, invalid plan or script, plan rejected
EXIT_COORDINATOR = 3  # coordinator unreachable, token refused, local processes failed
EXIT_NO_GENERATORS = 4  # no generator registered (or the local one failed)
EXIT_BUSY = 5  # another run is in progress on the coordinator
EXIT_THRESHOLDS = 99  # a threshold failed (k6's code)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: the run was aborted; its archive is still printed

EXIT_CODES_HELP = """\
exit codes:
  0    the run completed and no errors were counted; with thresholds, the run
       completed and every threshold passed (the target's errors then count
       only through thresholds such as 'error_rate < 1%'; a generator lost, a
       worker killed or crashed, or devices cancelled or not placed, still
       make it 1)
  1    the run ended, but devices counted errors (connection failures,
       timeouts, script exceptions; see the summary on stderr) or it was
       aborted by something other than this command; the archive location is
       still printed. network_tcp_retransmit_error, a host metric, is shown as
       a warning only
  2    usage error: bad option, missing script or plan file, invalid plan,
       script error (with its line and column), plan rejected by the coordinator
  3    the coordinator cannot be used: unreachable, token refused, unexpected
       answer, or (--local) the coordinator or demo target failed to start
  4    no generator is registered (or, --local, the generator failed to start)
  5    another run is in progress on the coordinator
  99   a threshold failed (the summary on stderr says which, with the value
       measured); the archive location is still printed
  130  interrupted (Ctrl-C or SIGTERM): the run was aborted, and its archive
       location is still printed once the coordinator has written it
"""


class CliError(Exception):
    """Ends the command with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

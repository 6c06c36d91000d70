"""pulse_ops: the ``pulse-ops`` command, an operator's command line for pulse.

It is a plain client of the SDK (``pulse_client``); ``pulse_ops.cli`` holds
the usage text and runs the commands.
"""

import os

# gRPC's C core writes its own lines to stderr (a failed TLS handshake, for
# one) before pulse-ops can say what went wrong in one line. It reads this
# when it starts, so it is set before anything imports grpc; an operator
# who wants those lines sets GRPC_VERBOSITY themselves.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

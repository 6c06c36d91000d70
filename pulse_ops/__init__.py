"""pulse_ops: the ``pulse-ops`` command, an operator's command line for pulse.

It is a plain client of the SDK (``pulse_client``); ``pulse_ops.cli`` holds
the usage text and runs the commands.
"""

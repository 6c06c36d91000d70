"""Container health check: exit 0 when the local pulsed answers SERVING.

Usage: python -m pulsed.healthcheck [HOST:PORT]

The address defaults to PULSE_HEALTH_ADDR, else 127.0.0.1 at the port of
PULSE_GRPC_ADDR. pulsed answers NOT_SERVING while its database is
unreachable, so an orchestrator restarts or drains it.
"""

from __future__ import annotations

import os
import sys

# One line of its own, not gRPC's C-core chatter (read when grpc starts).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _address(argv: list[str]) -> str:
    if argv:
        return argv[0]
    if os.environ.get("PULSE_HEALTH_ADDR"):
        return os.environ["PULSE_HEALTH_ADDR"]
    port = os.environ.get("PULSE_GRPC_ADDR", "127.0.0.1:50051").rpartition(":")[2]
    return f"127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    address = _address(sys.argv[1:] if argv is None else argv)
    ca_file = os.environ.get("PULSE_HEALTH_CA_FILE") or os.environ.get("PULSE_TLS_CERT")
    try:
        if ca_file:
            # The server's own certificate (or the CA file given) is the
            # trust root; the name checked is the one the certificate is
            # for (PULSE_HEALTH_SERVER_NAME), not 127.0.0.1.
            with open(ca_file, "rb") as pem:
                roots = pem.read()
            channel = grpc.secure_channel(
                address,
                grpc.ssl_channel_credentials(root_certificates=roots),
                options=[
                    (
                        "grpc.ssl_target_name_override",
                        os.environ.get("PULSE_HEALTH_SERVER_NAME", "localhost"),
                    )
                ],
            )
        else:
            channel = grpc.insecure_channel(address)
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=3
            )
    except grpc.RpcError as exc:
        print(f"pulsed at {address}: {exc.code().name}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pulsed health check: {exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"pulsed at {address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())

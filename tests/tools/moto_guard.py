"""Runs a moto server on a free loopback port for one test process.

Requests are served one at a time: moto's threaded server does not isolate concurrent
requests (two racing conditional writes can both succeed, and racing transactions can fail
with 500), while DynamoDB applies each request atomically. Serving serially gives moto that
atomicity, so the conformance suite's concurrency scenarios mean the same on both servers.

Prints the port once the server listens (the readiness signal), then serves until its standard
input closes: when the test process exits, for whatever reason, moto goes with it.
"""
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()

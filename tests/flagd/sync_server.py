"""A flagd sync server for the e2e tests: `flagd.sync.v1.FlagSyncService/SyncFlags` on
OpenFeature's own generated code (PyPI `openfeature-provider-flagd`, from flagd's proto) and
grpcio, so the filter meets the real wire format.

Driven by JSON lines on stdin, each answered by one line on stdout:
  {"push": SELECTOR, "config": TEXT}  every stream of SELECTOR gets TEXT as flag_configuration
                                      (TEXT as given: the test may send what is not JSON);
                                      later streams get it first, as flagd sends its state
  {"stop": true}                      the server goes away, streams and all
  {"start": true}                     back on the same port
  {"streams": true}                   open streams by selector, and how many were ever opened
The first line printed is the port.
"""

import json
import queue
import sys
import threading
from concurrent import futures

import grpc
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

lock = threading.Lock()
latest = {}  # selector -> text
streams = {}  # selector -> set of queues
opened = {}  # selector -> count


def selector_of(request, context):
    for key, value in context.invocation_metadata():
        if key == "flagd-selector":
            return value
    return request.selector


class Sync(sync_pb2_grpc.FlagSyncServiceServicer):
    def SyncFlags(self, request, context):
        selector = selector_of(request, context)
        q = queue.Queue()
        with lock:
            streams.setdefault(selector, set()).add(q)
            opened[selector] = opened.get(selector, 0) + 1
            if selector in latest:
                q.put(latest[selector])
        try:
            while context.is_active():
                try:
                    text = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                yield sync_pb2.SyncFlagsResponse(flag_configuration=text)
        finally:
            with lock:
                streams.get(selector, set()).discard(q)

    def FetchAllFlags(self, request, context):
        with lock:
            text = latest.get(selector_of(request, context), "")
        return sync_pb2.FetchAllFlagsResponse(flag_configuration=text)


def serve(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    sync_pb2_grpc.add_FlagSyncServiceServicer_to_server(Sync(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def main():
    server, port = serve(0)
    print(port, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if "push" in cmd:
            with lock:
                latest[cmd["push"]] = cmd["config"]
                for q in streams.get(cmd["push"], ()):
                    q.put(cmd["config"])
            print("ok", flush=True)
        elif "stop" in cmd:
            server.stop(grace=None).wait()
            print("ok", flush=True)
        elif "start" in cmd:
            server, _ = serve(port)
            print("ok", flush=True)
        elif "streams" in cmd:
            with lock:
                now = {s: len(qs) for s, qs in streams.items()}
                print(json.dumps({"open": now, "opened": opened}), flush=True)


if __name__ == "__main__":
    main()

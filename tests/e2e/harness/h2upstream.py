"""A scripted HTTP/2 (h2c, prior knowledge) upstream for tests of the gateway's client.

One thread per connection, sans-io h2 state machine. It counts connections and
requests and answers by path:
  /json?d=MS      200 JSON {"path", "conn"} after MS milliseconds (streams overlap)
  /trailers       200 "hello" with trailers grpc-status: 0, grpc-message: ok
  /echo           echoes the request body as it comes (flow control both ways: request
                  DATA is acknowledged only while less than 1 MiB waits to go back)
  /big?n=BYTES    BYTES of 'x' (as fast as the client's window allows)
  /goaway         the first connection answers its first stream and sends GOAWAY with
                  that stream as last-stream-id: later streams on it are refused
  /bad            garbage instead of frames (a protocol error)

Also runnable: `python3 h2upstream.py PORTFILE` serves until killed, writing its port
(for C unit tests).
"""
import select
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class H2Upstream:
    def __init__(self, name="h2up"):
        self.name = name
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.paths = []
        self.conn_of = []  # the connection number of each request
        self.max_concurrent = 0
        self.request_trailers = []  # (path, {name: value}) per request that had trailers
        self._active = 0
        self._stop = False
        self._goaway_done = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self._threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def config(self, **extra):
        up = {"name": self.name, "protocol": "h2c", "targets": [{"address": self.address}]}
        up.update(extra)
        return up

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(timeout=2)

    def _accept(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                fd, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            t = threading.Thread(target=_Conn(self, fd, n).run, daemon=True)
            t.start()
            self._threads.append(t)


class _Stream:
    def __init__(self, path):
        self.path = path
        self.out = b""
        self.out_end = False
        self.trailers = None
        self.due = None  # time to start answering
        self.body = None


class _Conn:
    def __init__(self, srv, fd, n):
        self.srv, self.fd, self.n = srv, fd, n
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.streams = {}
        self.goaway_last = None

    def run(self):
        try:
            self._run()
        except (OSError, h2.exceptions.H2Error):
            pass
        finally:
            self.fd.close()

    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            self.fd.sendall(data)

    def _run(self):
        self.h2.initiate_connection()
        self._flush()
        while not self.srv._stop:
            r, _, _ = select.select([self.fd], [], [], 0.01)
            if r:
                data = self.fd.recv(65536)
                if not data:
                    return
                for ev in self.h2.receive_data(data):
                    self._event(ev)
            self._pump()
            self._flush()
            if self.goaway_last is not None and not self.streams:
                time.sleep(0.05)
                return

    def _event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            if self.goaway_last is not None and ev.stream_id > self.goaway_last:
                return
            hdrs = {k.decode(): v.decode() for k, v in ev.headers}
            path = hdrs.get(":path", "/")
            with self.srv.lock:
                self.srv.requests += 1
                self.srv.paths.append(path)
                self.srv.conn_of.append(self.n)
                self.srv._active += 1
                self.srv.max_concurrent = max(self.srv.max_concurrent, self.srv._active)
            st = _Stream(path)
            st.headers = hdrs
            self.streams[ev.stream_id] = st
            self._start(ev.stream_id, st)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is None:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                return
            if st.path.startswith("/echo"):
                st.out += ev.data
                st.pending_ack = getattr(st, "pending_ack", 0) + ev.flow_controlled_length
            else:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            st = self.streams.get(ev.stream_id)
            with self.srv.lock:
                self.srv.request_trailers.append(
                    (st.path if st else "", {k.decode(): v.decode() for k, v in ev.headers}))
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.get(ev.stream_id)
            if st is not None and st.path.startswith("/echo"):
                st.out_end = True
        elif isinstance(ev, h2.events.StreamReset):
            self._done(ev.stream_id)

    def _start(self, sid, st):
        path, _, query = st.path.partition("?")
        args = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
        if path == "/bad":
            self.fd.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 4)
            return
        if path == "/goaway" and not self.srv._goaway_done:
            self.srv._goaway_done = True
            self.goaway_last = sid  # GOAWAY goes out once this one is answered
        st.due = time.monotonic() + int(args.get("d", "0")) / 1000.0
        if path == "/echo":
            st.due = time.monotonic()
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
            st.started = True
            return
        if path == "/trailers":
            st.out, st.out_end = b"hello", True
            st.trailers = [("grpc-status", "0"), ("grpc-message", "ok")]
        elif path == "/big":
            st.out, st.out_end = b"x" * int(args.get("n", "0")), True
        else:
            st.out = ('{"path": "%s", "conn": %d}' % (st.path, self.n)).encode()
            st.out_end = True

    def _pump(self):
        now = time.monotonic()
        for sid, st in list(self.streams.items()):
            if st.due is None or now < st.due:
                continue
            if not getattr(st, "started", False):
                st.started = True
                hdrs = [(":status", "200")]
                if not st.path.startswith("/big") and not st.path.startswith("/trailers"):
                    hdrs.append(("content-type", "application/json"))
                    hdrs.append(("content-length", str(len(st.out))))
                self.h2.send_headers(sid, hdrs)
            while st.out:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, st.out = st.out[:room], st.out[room:]
                self.h2.send_data(sid, chunk)
                self._flush()
            ack = getattr(st, "pending_ack", 0)
            if ack and len(st.out) < (1 << 20):
                self.h2.acknowledge_received_data(ack, sid)
                st.pending_ack = 0
            if not st.out and st.out_end:
                if st.trailers:
                    self.h2.send_headers(sid, st.trailers, end_stream=True)
                else:
                    self.h2.end_stream(sid)
                if sid == self.goaway_last:
                    self.h2.close_connection(last_stream_id=sid)
                self._done(sid)

    def _done(self, sid):
        if self.streams.pop(sid, None) is not None:
            with self.srv.lock:
                self.srv._active -= 1


if __name__ == "__main__":
    srv = H2Upstream()
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.port))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(1)

"""A web server for examples/datacenter.yaml: answers every GET on port 80
with the name of the host it runs on (KUMOFLOW_HOST), so a client sees which
server a load balancer chose; and on port 22 an ssh stand-in that greets
with a banner (what the firewall lets through or not)."""
import http.server
import os
import socketserver
import threading

NAME = os.environ.get("KUMOFLOW_HOST", "web")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = (NAME + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(self.client_address[0], fmt % args, flush=True)


class Banner(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(f"SSH-2.0-{NAME}\r\n".encode())


socketserver.ThreadingTCPServer.allow_reuse_address = True
ssh = socketserver.ThreadingTCPServer(("0.0.0.0", 22), Banner)
threading.Thread(target=ssh.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()

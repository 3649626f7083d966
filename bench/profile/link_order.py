#!/usr/bin/env python3
"""Regenerate bench/profile/link-order.txt: the extension's functions that a typical process runs.

build.rs hands this file to the linker (lld's --symbol-ordering-file), which places these functions
together at the start of .text. The kernel maps a shared object's code in 64 KB windows around each
page fault, so code used by a request or the sender, spread over 5.8 MB of .text, made almost all
of it resident in every process; packed together it is about 1.5 MB (PROFILE.md, "Resident code").

The list is what callgrind sees run (valgrind is needed only here), phase by phase (PHASES below):
the extension loaded; events dispatched; 20,000 keyed events delivered over HTTP to a receiver that
answers as nginx does; coalesced events and a retry after a 500; an HTTPS attempt (the TLS handshake
up to certificate verification, which fails against the self-signed receiver); the admin functions
(status, events, event, endpoints, metrics, verify). About three minutes.

A stale list is harmless: functions it no longer names are placed by the linker as usual, and
unknown names are ignored. Regenerate it after larger changes (the bench's RSS figure grows):

    cargo build --release && python3 bench/profile/link_order.py target/release/libwoosync.so
"""
import argparse
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "link-order.txt"

# Phases, each in a process of its own; the list is each phase's new functions (hottest first)
# after those of the phases before. A process maps only the part of the block its work reaches:
# loading, dispatching (every web request), delivering over HTTP (the sender; as many events as the
# bench, so that SQLite's code for larger numbers and fuller caches is seen), then retries, TLS and
# the admin functions.
PHASES = [
    ("load", ""),
    ("dispatch", r"""
woosync_dispatch('product.updated', $p); usleep(300000);
for ($i = 0; $i < 200; $i++) woosync_dispatch('product.updated', $p, ['key' => 'product:' . ($i % 50)]);
"""),
    ("deliver", r"""
woosync_endpoint_save('crm', ['url' => $a['http']]);
woosync_dispatch('product.updated', $p); woosync_flush(30.0); usleep(200000);
for ($i = 0; $i < 20000; $i++) woosync_dispatch('product.updated', $p, ['key' => 'product:' . ($i % 1000)]);
woosync_flush(120.0);
"""),
    ("retry", r"""
woosync_endpoint_save('crm', ['url' => $a['http'], 'retry_delays' => '1']);
for ($i = 0; $i < 50; $i++) woosync_dispatch('stock.changed', $p, ['key' => 'product:' . ($i % 10), 'coalesce' => true]);
$id = woosync_dispatch('order.failing', $p, ['key' => 'order:1']);
woosync_flush(30.0);
attempted($id, 2);
"""),
    ("tls", r"""
woosync_endpoint_save('tls', ['url' => $a['https'], 'retry_delays' => '', 'topics' => ['tls.*']]);
attempted(woosync_dispatch('tls.probe', $p), 1);
"""),
    ("admin", r"""
woosync_endpoint_save('crm', ['url' => $a['http']]);
$id = woosync_dispatch('product.updated', $p); woosync_flush(10.0);
woosync_status(); woosync_events(['limit' => 20]); woosync_event($id); woosync_endpoints(); woosync_metrics();
$h = ['webhook-id' => 'msg_1', 'webhook-timestamp' => (string) time(), 'webhook-signature' => 'v1,AAAA'];
woosync_verify('{}', $h, 'whsec_' . base64_encode(str_repeat('k', 24)));
"""),
]
# The C runtime's code that runs when the object is loaded (crtbeginS.o's section, which callgrind
# does not attribute to the object's functions): first.
LOADER = ["frame_dummy", "register_tm_clones", "deregister_tm_clones", "__do_global_dtors_aux"]
# SQLite's code for lock contention between processes, which a single profiled process seldom runs.
CONTENTION = ["unixSleep", "btreeInvokeBusyHandler", "pagerStress"]

HEAD = r"""<?php
$a = json_decode($argv[1], true);
// Waits until the event has had `$n` attempts (a phase that did not happen fails the run).
function attempted(string $id, int $n) {
    for ($t = 0; $t < 1200; $t++) {
        $e = woosync_event($id);
        if (count($e['attempts'] ?? []) >= $n) return;
        usleep(50000);
    }
    fwrite(STDERR, "$id: fewer than $n attempts: " . json_encode($e['deliveries'] ?? null) . "\n"); exit(1);
}
$p = ['id' => 1, 'name' => 'Hoodie', 'stock_quantity' => 7, 'pad' => str_repeat('x', 600), 'tags' => ['a', 'b'], 'price' => 19.5];
"""


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    failed = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # The first attempt of an order.failing event gets a 500 (the retry path), its retry a 200.
        code = 200
        if b"order.failing" in body and body not in Receiver.failed:
            Receiver.failed.add(body)
            code = 500
        self.send_response(code)
        # What a typical server answers (nginx): ureq's handling of these headers is on the hot path.
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "keep-alive")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass                      # the TLS receiver's failed handshakes are expected


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("so", help="the built extension (target/release/libwoosync.so)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    so = str(Path(args.so).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        http_port = serve(Server(("127.0.0.1", 0), Receiver))
        key, crt = t / "key.pem", t / "crt.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
        tls = Server(("127.0.0.1", 0), Receiver)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        tls_port = serve(tls)
        urls = json.dumps({"http": f"http://127.0.0.1:{http_port}/hook",
                           "https": f"https://127.0.0.1:{tls_port}/hook"})
        names, seen = LOADER + CONTENTION, set(LOADER + CONTENTION)
        for phase, code in PHASES:
            script = t / f"{phase}.php"
            script.write_text(HEAD + code + "echo 'done';\n")
            cost = profile(so, t / phase, script, urls)
            new = [n for n, _ in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0])) if n not in seen]
            seen.update(new)
            names += new
            print(f"{phase}: {len(new)} functions")
    Path(args.out).write_text("\n".join(names) + "\n")
    # The compiler the names come from (build.rs and tests/test_linking.py compare it with theirs).
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout
    Path(args.out).with_suffix(".rustc").write_text(rustc)
    print(f"{len(names)} functions -> {args.out} ({rustc.strip()})")


def profile(so, work, script, urls):
    """Runs the script under callgrind in an outbox of its own; the extension's functions by own cost."""
    work.mkdir()
    out = work / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--demangle=no", "--dump-instr=no", "--fair-sched=yes",
               f"--callgrind-out-file={out}",
           "php", "-n", "-d", f"extension={so}", "-d", f"woosync.database={work}/outbox.sqlite",
           "-d", "woosync.allow_networks=127.0.0.1/32", str(script), urls]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.endswith("done"):
        sys.exit(f"{script.name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")
    return self_cost(out, os.path.basename(so))


def self_cost(path, obj):
    """Instructions executed by each function of `obj` itself, by linker symbol name."""
    files, fns, cost = {}, {}, {}
    fn = None
    in_obj = after_call = False
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob|c?fi|c?fe|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, ident, name = m.groups()
            if kind in ("ob", "cob") and name:
                files[ident] = name
            if kind in ("fn", "cfn") and name:
                fns[ident] = name
            if kind == "ob":
                in_obj = files.get(ident, "").endswith(obj)
            elif kind == "fn":
                fn = fns[ident]
            continue
        if line.startswith("calls="):
            after_call = True              # the next cost line is the call's, not the function's own
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
            elif in_obj and fn:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    name = re.sub(r"'\d+$", "", fn)          # callgrind's recursion marks
                    if not name.startswith("0x"):
                        cost[name] = cost.get(name, 0) + int(parts[1])
    return cost


if __name__ == "__main__":
    main()

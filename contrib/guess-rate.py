#!/usr/bin/env python3
"""Guesses checked per minute from one address, with the cookie trick.

The attack from the outside review: a visitor who shares the hidden server's
address sends wrong tokens until it gets 429, then causes a cookie success
(here a PUT ?cookie= refresh with a live R cookie, as an agent re-parking
does), and repeats. Each 401 is a guess the server checked.

    python3 contrib/guess-rate.py target/debug/rendezvousd [SECONDS]

Starts the given rendezvousd (--plaintext, a temporary state folder, one
user with a known secret) on 127.0.0.1, runs for SECONDS (default 60) and
prints the 401s and 429s counted. Loopback only; nothing is left behind.
"""
import base64, hashlib, hmac, http.client, os, re, shutil, struct
import subprocess, sys, tempfile, threading, time, uuid

SECRET = b"12345678901234567890"


def totp(t):
    mac = hmac.new(SECRET, struct.pack(">Q", int(t) // 30), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 10**6)


def put(conn, query):
    conn.request("PUT", "/?" + query, headers={"Content-Length": "0"})
    r = conn.getresponse()
    body = r.read()
    return r.status, body


def main():
    binary = sys.argv[1]
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    state = tempfile.mkdtemp(prefix="guess-rate-")
    user = str(uuid.uuid4())
    b32 = base64.b32encode(SECRET).decode()
    with open(os.path.join(state, "users"), "w") as f:
        f.write("%s %s 30 6 test\n" % (user, b32))
    os.chmod(os.path.join(state, "users"), 0o600)
    srv = subprocess.Popen(
        [binary, "serve", "--plaintext", "--registrar", "127.0.0.1:0",
         "--rendezvous", "127.0.0.1:0", "--state-dir", state],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="info"))
    try:
        port = None
        for line in srv.stderr:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(registrar", line)
            if m:
                port = int(m.group(1))
                break
        # Keep reading the log, or the server blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        status, body = put(conn, "uuid=%s&response=%s" % (user, totp(time.time())))
        assert status == 200, body
        cookie = re.search(rb'"cookie":"(R[^"]+)"', body).group(1).decode()
        wrong = "000000" if totp(time.time()) != "000000" else "111111"
        checked = refused = cookie_ok = 0
        end = time.time() + secs
        while time.time() < end:
            status, _ = put(conn, "uuid=%s&response=%s" % (user, wrong))
            if status == 401:
                checked += 1
            elif status == 429:
                refused += 1
                status, _ = put(conn, "uuid=%s&cookie=%s" % (user, cookie))
                cookie_ok += status == 200
                time.sleep(0.05)
            else:
                raise SystemExit("unexpected status %d" % status)
        print("%s: %.0f s, guesses checked (401): %d, refused (429): %d, "
              "cookie successes: %d, checked per minute: %.1f"
              % (binary, secs, checked, refused, cookie_ok, checked * 60 / secs))
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The clients of the gateway benchmark (bench/src/gateway.rs): each prints one JSON line.

  fetch HOST PORT MODE USER      UID FETCH 1:* BODY.PEEK[] of INBOX, literals only counted.
                                 MODE: login (plain, LOGIN with $PASSWORD: the gateway or the peer
                                 proxy) or xoauth2 (implicit TLS to the server, $TOKEN, CA in $CA).
                                 -> {"messages", "bytes", "secs"} (login to logout)
  logins HOST PORT MODE USER N   N sequential logins and logouts -> {"median_ms", "all_ms"}
  smtp HOST PORT MODE USER N KB  one session, N messages of about KB kilobytes.
                                 MODE: login (plain, AUTH LOGIN) or xoauth2 (STARTTLS, $TOKEN).
                                 -> {"messages", "secs"} (connect to QUIT)
"""

import imaplib
import json
import os
import re
import smtplib
import ssl
import statistics
import sys
import time

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def imap_session(host, port, mode, user):
    if mode == "xoauth2":
        context = ssl.create_default_context(cafile=os.environ["CA"])
        conn = imaplib.IMAP4_SSL(host, port, ssl_context=context)
        sasl = f"user={user}\x01auth=Bearer {os.environ['TOKEN']}\x01\x01"
        conn.authenticate("XOAUTH2", lambda _challenge: sasl)
    else:
        conn = imaplib.IMAP4(host, port)
        conn.login(user, os.environ["PASSWORD"])
    return conn


def fetch(host, port, mode, user):
    started = time.perf_counter()
    conn = imap_session(host, port, mode, user)
    typ, _ = conn.select("INBOX", readonly=True)
    if typ != "OK":
        raise SystemExit("EXAMINE INBOX failed")
    tag = conn._new_tag()  # imaplib has no streaming FETCH; drive the wire ourselves
    conn.send(tag + b" UID FETCH 1:* (BODY.PEEK[])\r\n")
    messages = total = 0
    while True:
        line = conn.readline()
        if not line:
            raise SystemExit("connection closed during FETCH")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise SystemExit(f"FETCH failed: {line!r}")
            break
        literal = LITERAL.search(line)
        if literal is None:
            continue
        left = size = int(literal.group(1))
        while left:
            chunk = conn.read(min(left, 1 << 20))
            if not chunk:
                raise SystemExit("connection closed inside a literal")
            left -= len(chunk)
        if b" FETCH " in line:
            messages += 1
            total += size
    conn.logout()
    secs = time.perf_counter() - started
    print(json.dumps({"messages": messages, "bytes": total, "secs": secs}))


def logins(host, port, mode, user, n):
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn = imap_session(host, port, mode, user)
        times.append((time.perf_counter() - started) * 1000)
        conn.logout()
    print(json.dumps({"median_ms": statistics.median(times), "all_ms": times}))


def message(i, kb):
    body_line = ("Scan page %d: " % i + "x" * 60 + "\r\n").encode()
    body = body_line * max(1, (kb * 1024) // len(body_line))
    head = (
        "From: help@bench.test\r\nTo: someone@example.org\r\nSubject: Scan %d\r\n"
        "Message-ID: <scan%d@bench.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n" % (i, i)
    ).encode()
    return head + body


def smtp(host, port, mode, user, n, kb):
    messages = [message(i, kb) for i in range(n)]
    started = time.perf_counter()
    if mode == "xoauth2":
        context = ssl.create_default_context(cafile=os.environ["CA"])
        c = smtplib.SMTP(host, port)
        c.starttls(context=context)
        c.ehlo()
        sasl = f"user={user}\x01auth=Bearer {os.environ['TOKEN']}\x01\x01"
        # Without an initial response: Dovecot refuses an AUTH line this long.
        c.auth("XOAUTH2", lambda challenge=None: sasl, initial_response_ok=False)
    else:
        c = smtplib.SMTP(host, port)
        c.login(user, os.environ["PASSWORD"])
    for raw in messages:
        refused = c.sendmail(user, ["someone@example.org"], raw)
        if refused:
            raise SystemExit(f"refused: {refused}")
    c.quit()
    secs = time.perf_counter() - started
    print(json.dumps({"messages": n, "secs": secs}))


def main():
    what, host, port, mode, user = sys.argv[1:6]
    port = int(port)
    if what == "fetch":
        fetch(host, port, mode, user)
    elif what == "logins":
        logins(host, port, mode, user, int(sys.argv[6]))
    elif what == "smtp":
        smtp(host, port, mode, user, int(sys.argv[6]), int(sys.argv[7]))
    else:
        raise SystemExit(f"unknown: {what}")


if __name__ == "__main__":
    main()

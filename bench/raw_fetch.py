#!/usr/bin/env python3
"""The server's limit: the least work a client can do to read a whole mailbox over IMAP.

Logs in over implicit TLS with AUTHENTICATE XOAUTH2 (imaplib, the SASL string from a lambda),
EXAMINEs INBOX and sends one `UID FETCH 1:* (BODY.PEEK[])`, then streams the answer: each
literal is read in 1 MiB chunks and only counted, never kept. Prints one JSON line:
{"messages": N, "bytes": B}.

Usage: raw_fetch.py HOST PORT CA_FILE USER   (the access token in the environment: RAW_TOKEN)
"""

import imaplib
import json
import os
import re
import ssl
import sys

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def main() -> int:
    host, port, ca_file, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    token = os.environ["RAW_TOKEN"]
    context = ssl.create_default_context(cafile=ca_file)
    conn = imaplib.IMAP4_SSL(host, port, ssl_context=context)
    sasl = f"user={user}\x01auth=Bearer {token}\x01\x01"
    conn.authenticate("XOAUTH2", lambda _challenge: sasl)
    typ, _ = conn.select("INBOX", readonly=True)
    if typ != "OK":
        raise SystemExit("EXAMINE INBOX failed")

    tag = conn._new_tag()  # imaplib has no streaming FETCH; drive the wire ourselves
    conn.send(tag + b" UID FETCH 1:* (BODY.PEEK[])\r\n")
    messages = 0
    total = 0
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
            continue  # the ")" closing a FETCH item, or an untagged status line
        size = int(literal.group(1))
        left = size
        while left:
            chunk = conn.read(min(left, 1 << 20))
            if not chunk:
                raise SystemExit("connection closed inside a literal")
            left -= len(chunk)
        if b" FETCH " in line:
            messages += 1
            total += size
    conn.logout()
    print(json.dumps({"messages": messages, "bytes": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

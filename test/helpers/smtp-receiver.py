#!/usr/bin/python3
# A real SMTP server for tests (Debian's python3-aiosmtpd): STARTTLS with the given certificate
# (required before AUTH and MAIL), AUTH PLAIN/LOGIN against one user and password, and every
# message received written as OUTDIR/NNNN.json ({from, to, data, tls, user}). Prints the port
# it listens on (127.0.0.1, a free one) on stdout, then serves until killed.
#   smtp-receiver.py OUTDIR CERTFILE KEYFILE USER PASSWORD
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

outdir, certfile, keyfile, user, password = sys.argv[1:6]


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(outdir, f"{self.count:04d}.json")
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
        }
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="vcbt-test-smtp", tls_context=context, require_starttls=True,
                     auth_required=True, auth_require_tls=True, authenticator=authenticator),
        "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())

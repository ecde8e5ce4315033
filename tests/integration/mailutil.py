"""A real local mail server for notification tests: a throwaway CA and
server certificate for 127.0.0.1 (python3-cryptography) and an aiosmtpd
server that requires STARTTLS and, optionally, AUTH (python3-aiosmtpd).
Importing this module skips the test (exit 77) when either is missing."""
import datetime
import email
import email.policy
import ipaddress
import logging
import os
import ssl

import yit

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:
    yit.skip("python3-aiosmtpd is not installed (scripts/install-deps.sh)")
try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
except ImportError:
    yit.skip("python3-cryptography is not installed (scripts/install-deps.sh)")

# aiosmtpd's own AUTH code logs a warning about its own deprecated attribute.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def make_certs(d):
    """A throwaway CA and a server certificate for 127.0.0.1 in directory d:
    returns the paths of ca.pem, server.pem and server.key."""
    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yamori test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.pem"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


class Mail:
    """One message as the server received it."""

    def __init__(self, mail_from, rcpts, content, tls, authenticated, session):
        self.session = session  # the same value for messages of one connection
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.content = content
        self.tls = tls
        self.authenticated = authenticated
        self.msg = email.message_from_bytes(content, policy=email.policy.default)

    @property
    def subject(self):
        return self.msg["subject"]

    def body(self):
        return self.msg.get_content()


class SmtpSink:
    """aiosmtpd on 127.0.0.1:port. With certs, STARTTLS is required (or,
    with implicit_tls, TLS from the start as for smtps://); with
    user and password, AUTH is accepted for them only (auth_seen records
    each attempt). start() and stop() may be called later than creation,
    to simulate a server that is down."""

    def __init__(self, port, certs=None, user=None, password=None, implicit_tls=False):
        self.received = []
        self.auth_seen = []
        sink = self

        self.connections = 0

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                if not hasattr(session, "yamori_conn"):  # number the connections
                    sink.connections += 1
                    session.yamori_conn = sink.connections
                sink.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.content, session.ssl is not None,
                                          bool(session.authenticated), session.yamori_conn))
                return "250 OK"

        kw = {}
        if certs is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(certs["server.pem"], certs["server.key"])
            if implicit_tls:  # smtps: TLS from the first byte
                kw.update(ssl_context=tls)
            else:
                kw.update(tls_context=tls, require_starttls=True)
        if user is not None:
            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
                      and auth_data.password == password.encode())
                sink.auth_seen.append((mechanism, ok))
                return AuthResult(success=ok, handled=False)
            kw.update(authenticator=authenticator, auth_require_tls=certs is not None)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
        self.running = False

    def start(self):
        self.controller.start()
        self.running = True

    def stop(self):
        if self.running:
            self.controller.stop()
            self.running = False

    def to(self, addr):
        return [m for m in self.received if addr in m.rcpts]

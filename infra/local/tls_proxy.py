#!/usr/bin/env python3
"""TLS in front of a loopback service, for the tests of the SDK's trust roots.

    tls_proxy.py CA_PEM_OUT PORT TARGET_PORT

Makes a throwaway CA and a certificate for 127.0.0.1 signed by it, writes the CA
certificate (PEM) to CA_PEM_OUT, then accepts TLS on 127.0.0.1:PORT and relays each
connection's bytes to 127.0.0.1:TARGET_PORT (e.g. DynamoDB Local). Runs until killed.
"""

import datetime
import ipaddress
import os
import socket
import ssl
import sys
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(subject, issuer, public_key, signing_key, ca, extra):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def relay(source, sink, before_send=None):
    """Copies bytes from source to sink until either side closes, then closes both;
    `before_send` runs before each chunk goes on (the fault runs' delay)."""
    try:
        while data := source.recv(65536):
            if before_send:
                before_send()
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, context, target_port):
    try:
        tls = context.wrap_socket(client, server_side=True)
    except (ssl.SSLError, OSError):
        client.close()  # the client refused our certificate: what one of the tests wants
        return
    upstream = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=relay, args=(tls, upstream), daemon=True).start()
    relay(upstream, tls)


def main() -> None:
    ca_out, port, target_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("tokenauth test CA", "tokenauth test CA", ca_key.public_key(), ca_key, True,
                     [x509.KeyUsage(False, False, False, False, False, True, True, False, False)])
    server = certificate("127.0.0.1", "tokenauth test CA", server_key.public_key(), ca_key, False,
                         [x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                          x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        chain, key = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        with open(chain, "wb") as f:
            f.write(server.public_bytes(serialization.Encoding.PEM))
        with open(key, "wb") as f:
            f.write(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        context.load_cert_chain(chain, key)
    with open(ca_out + ".tmp", "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    listener = socket.create_server(("127.0.0.1", port))
    os.replace(ca_out + ".tmp", ca_out)  # the CA file appears once the port is open
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, context, target_port), daemon=True).start()


if __name__ == "__main__":
    main()

//! The local stack keeps to this machine: DynamoDB Local listens on loopback only and
//! answers no browser page of a foreign origin (CORS closed). Its own options have no
//! listen address, so infra/local/stack.py starts it through a launcher that binds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// The stack's DynamoDB Local port, from the endpoint the stack wrote.
fn dynamodb_port() -> u16 {
    tokenauth_tests::stack_required("the stack's DynamoDB Local");
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("the stack's variables (stack tier)");
    endpoint.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

/// The local addresses of every listening TCP socket on `port`, from /proc/net/tcp{,6}.
fn listening_addresses(port: u16) -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else { continue };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields[1], fields[3]);
            let (address, local_port) = local.split_once(':').unwrap();
            if state != "0A" || u16::from_str_radix(local_port, 16).unwrap() != port {
                continue;
            }
            // The kernel prints each 32-bit word in host (little-endian) order.
            let bytes: Vec<u8> = (0..address.len() / 8)
                .flat_map(|word| {
                    let word = u32::from_str_radix(&address[word * 8..word * 8 + 8], 16).unwrap();
                    word.to_le_bytes()
                })
                .collect();
            addresses.push(if v6 {
                IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap())
            } else {
                IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap())
            });
        }
    }
    addresses
}

fn is_loopback(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// An address of this machine that is not loopback: the source of the route out
/// (a connected UDP socket sends nothing), if there is one.
fn outward_address() -> Option<IpAddr> {
    for target in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let target: SocketAddr = target.parse().unwrap();
        let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
        let Ok(socket) = UdpSocket::bind(bind) else { continue };
        if socket.connect(target).is_ok() {
            let local = socket.local_addr().unwrap().ip();
            if !local.is_unspecified() && !is_loopback(&local) {
                return Some(local);
            }
        }
    }
    None
}

#[test]
fn dynamodb_local_listens_on_loopback_only() {
    let port = dynamodb_port();
    let listening = listening_addresses(port);
    assert!(!listening.is_empty(), "nothing listens on DynamoDB Local's port {port} (read /proc/net/tcp and tcp6)");
    assert!(
        listening.iter().all(is_loopback),
        "DynamoDB Local listens on {listening:?}: every interface, not loopback only"
    );
    match outward_address() {
        Some(address) => {
            let reached = TcpStream::connect_timeout(&SocketAddr::new(address, port), Duration::from_secs(2));
            assert!(reached.is_err(), "DynamoDB Local answers on {address}:{port}, an address that is not loopback");
        }
        None => eprintln!(
            "this machine has no address but loopback: no connection from outside to try; the listening \
             sockets above are all loopback"
        ),
    }
}

/// A raw HTTP/1.1 exchange with DynamoDB Local: the response's head, lower-cased.
fn exchange(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).to_lowercase();
    let head = response.split("\r\n\r\n").next().unwrap().to_owned();
    assert!(head.starts_with("http/1.1 "), "{head}");
    head
}

#[test]
fn dynamodb_local_allows_no_foreign_origin() {
    let port = dynamodb_port();
    let preflight = exchange(
        port,
        &format!(
            "OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-amz-target\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(!preflight.contains("access-control-allow-origin"), "a preflight from a foreign origin: {preflight}");
    let body = "{}";
    let call = exchange(
        port,
        &format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n\
             X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Type: application/x-amz-json-1.0\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(call.starts_with("http/1.1 200"), "the call itself is answered: {call}");
    assert!(!call.contains("access-control-allow-origin"), "a call from a foreign origin: {call}");
}

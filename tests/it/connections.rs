//! Connections that never become deliveries: sockets that send nothing, one byte, or only the
//! HTTP/2 preface, and more open connections than the receiver holds. Each must cost the
//! receiver nothing lasting, and a real delivery must still get through.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{bin, event, spawn_with, ServeChild, Spawn, TestApp, SECRET};

/// Far longer than any deadline here: reaching it means the server never closed the socket.
const GENEROUS: Duration = Duration::from_secs(30);

/// The HTTP/2 client preface and an empty SETTINGS frame: a valid start that asks for nothing.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn app_with(request_timeout_secs: u32, max_connections: usize, rt: &tokio::runtime::Runtime) -> TestApp {
    let mut settings = Spawn::default().settings;
    settings.request_timeout_secs = request_timeout_secs;
    settings.max_connections = max_connections;
    rt.block_on(spawn_with(Spawn { settings, ..Spawn::default() }))
}

fn connect(app: &TestApp) -> TcpStream {
    let conn = TcpStream::connect(app.base.trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(GENEROUS)).unwrap();
    conn
}

/// Reads (and discards what the server says) until the server closes the connection.
fn wait_for_close(conn: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: the server did not close the connection ({e})"),
        }
    }
}

/// Whether the server has closed `conn` yet, without waiting.
fn is_closed(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let closed = match conn.peek(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    conn.set_nonblocking(false).unwrap();
    closed
}

/// A receiver with a 1 s deadline, a socket opened to it and sent `first`, and the receiver's
/// answer to a delivery once that socket was closed.
fn closed_after_the_deadline(first: &[u8], what: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = app_with(1, 64, &rt);
    let mut conn = connect(&app);
    conn.write_all(first).unwrap();
    wait_for_close(&mut conn, what);
    assert_eq!(rt.block_on(app.post_signed(&event("evt_after_an_idler"))).status, 200);
    rt.block_on(app.stop());
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_deadline() {
    closed_after_the_deadline(b"", "a socket that sends nothing");
}

#[test]
fn a_connection_that_sends_one_byte_is_closed_after_the_deadline() {
    closed_after_the_deadline(b"P", "a socket that sends one byte");
}

#[test]
fn an_http2_connection_that_idles_after_its_preface_is_closed_after_the_deadline() {
    closed_after_the_deadline(H2_PREFACE, "an HTTP/2 connection that idles after its preface");
}

#[test]
fn http2_deliveries_are_still_served_under_the_connection_deadlines() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = app_with(1, 64, &rt);
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let body = event("evt_over_h2");
    let sig = zof_approvals::verify::sign_zof(&crate::helpers::secret(), &body);
    let answer = rt.block_on(client.post(&app.url).header("X-Zof-Signature", sig).body(body).send()).unwrap();
    assert_eq!((answer.version(), answer.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    rt.block_on(app.stop());
}

#[test]
fn beyond_the_connection_cap_the_longest_idle_connections_make_room_for_deliveries() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A long idle deadline: only the cap closes anything here.
    let app = app_with(10, 8, &rt);
    // Accepted in order: the 9th to the 12th each close the oldest, then the delivery the 5th.
    let mut idle: Vec<TcpStream> = (0..12).map(|_| connect(&app)).collect();
    assert_eq!(rt.block_on(app.post_signed(&event("evt_past_the_cap"))).status, 200);
    for (n, conn) in idle[..5].iter_mut().enumerate() {
        wait_for_close(conn, &format!("idle connection {n}, one of the five oldest"));
    }
    let kept: Vec<bool> = idle[5..].iter().map(|c| !is_closed(c)).collect();
    assert_eq!(kept, vec![true; 7], "the seven newest idle connections are kept");
    rt.block_on(app.stop());
}

#[test]
fn many_more_idle_connections_than_the_cap_do_not_keep_a_delivery_out() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = app_with(10, 16, &rt);
    let mut held: Vec<TcpStream> = (0..200).map(|_| connect(&app)).collect();
    assert_eq!(rt.block_on(app.post_signed(&event("evt_among_idlers"))).status, 200);
    for (n, conn) in held.iter_mut().take(150).enumerate() {
        wait_for_close(conn, &format!("idle connection {n} of 200, over a cap of 16"));
    }
    rt.block_on(app.stop());
}

#[test]
fn out_of_file_descriptors_the_receiver_frees_idle_connections_and_logs_the_failure_rarely() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: needs prlimit (util-linux) to start the receiver with few file descriptors");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=64:64")
        .arg(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config-dir")
        .arg(dir.path().join("config"))
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
    let started = Instant::now();
    let server = ServeChild::spawn(command);
    // Twice what the receiver can hold: it runs out of descriptors while they queue.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let _held: Vec<TcpStream> = (0..128).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder().timeout(GENEROUS).build().unwrap();
    let body = event("evt_out_of_descriptors");
    let sig = zof_approvals::verify::sign_zof(&crate::helpers::secret(), &body);
    let delivery = client.post(&server.url).header("X-Zof-Signature", sig).body(body);
    let answer = rt.block_on(async { delivery.send().await }).unwrap();
    assert_eq!(answer.status(), 200);
    server.terminate();
    let log = std::fs::read_to_string(&stderr).unwrap();
    let failures = log.lines().filter(|l| l.contains("accepting a connection failed")).count();
    assert!(failures >= 1, "the receiver did run out of descriptors:\n{log}");
    // Once per 10 s at most, however often accept fails.
    let allowed = 1 + started.elapsed().as_secs() / 10;
    assert!(failures as u64 <= allowed, "{failures} lines for {allowed} intervals of 10 s:\n{log}");
}

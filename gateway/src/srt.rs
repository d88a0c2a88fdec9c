//! The SRT listener, on libsrt itself (the library GStreamer's srt plugin uses on Debian).
//!
//! Why not `srtsrc mode=listener`: it takes one caller per element and one passphrase for all
//! callers, and a gateway takes thousands of stations on one port, each with its own
//! passphrase. libsrt's listen callback sees each caller's stream id before the handshake
//! completes and may set the passphrase that caller must prove (`SRTO_PASSPHRASE` on the new
//! socket): an unknown station is refused there, a wrong passphrase fails the handshake. Why
//! not the pure-Rust `srt-tokio`: tried first; it panics (`unimplemented!`) when a caller's key
//! length differs from the listener's — a remote input must never panic the gateway.
//!
//! Only the few calls needed are bound here, by hand (no maintained `-sys` crate binds the
//! system libsrt 1.5): startup, socket options, bind/listen/accept, the listen and log
//! callbacks, blocking receive with a timeout, close.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once};
use std::time::Duration;

use tracing::{debug, warn};

type SrtSocket = i32;
const SRT_ERROR: c_int = -1;
const SRT_INVALID_SOCK: SrtSocket = -1;

const SRTO_RCVSYN: c_int = 2;
const SRTO_RCVTIMEO: c_int = 14;
const SRTO_PASSPHRASE: c_int = 26;
const SRTO_RCVLATENCY: c_int = 43;
const SRTO_STREAMID: c_int = 46;
const SRTS_CONNECTED: c_int = 5;

type ListenCallback = unsafe extern "C" fn(
    opaque: *mut c_void,
    ns: SrtSocket,
    hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int;
type LogHandler = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

extern "C" {
    fn srt_startup() -> c_int;
    fn srt_create_socket() -> SrtSocket;
    fn srt_setsockflag(u: SrtSocket, opt: c_int, val: *const c_void, len: c_int) -> c_int;
    fn srt_getsockflag(u: SrtSocket, opt: c_int, val: *mut c_void, len: *mut c_int) -> c_int;
    fn srt_bind(u: SrtSocket, name: *const libc::sockaddr, len: c_int) -> c_int;
    fn srt_listen(u: SrtSocket, backlog: c_int) -> c_int;
    fn srt_accept(u: SrtSocket, addr: *mut libc::sockaddr, len: *mut c_int) -> SrtSocket;
    fn srt_listen_callback(u: SrtSocket, hook: ListenCallback, opaque: *mut c_void) -> c_int;
    fn srt_recvmsg(u: SrtSocket, buf: *mut c_char, len: c_int) -> c_int;
    fn srt_close(u: SrtSocket) -> c_int;
    fn srt_getsockstate(u: SrtSocket) -> c_int;
    fn srt_getlasterror_str() -> *const c_char;
    fn srt_setloglevel(level: c_int);
    fn srt_setloghandler(opaque: *mut c_void, handler: LogHandler);
    fn srt_setlogflags(flags: c_int);
}

#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    #[error("SRT {what}: {message}")]
    Call { what: &'static str, message: String },
}

fn last_error(what: &'static str) -> SrtError {
    // SAFETY: libsrt returns a pointer to a thread-local, NUL-terminated string.
    let message = unsafe { CStr::from_ptr(srt_getlasterror_str()) }
        .to_string_lossy()
        .into_owned();
    SrtError::Call { what, message }
}

fn check(rc: c_int, what: &'static str) -> Result<(), SrtError> {
    if rc == SRT_ERROR {
        Err(last_error(what))
    } else {
        Ok(())
    }
}

unsafe extern "C" fn log_to_tracing(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: libsrt passes NUL-terminated strings valid for the call.
            unsafe { CStr::from_ptr(p) }
                .to_string_lossy()
                .trim()
                .to_owned()
        }
    };
    let (area, message) = (text(area), text(message));
    if level <= libc::LOG_ERR {
        warn!(target: "srt", area, message, "libsrt error");
    } else {
        debug!(target: "srt", area, message, "libsrt");
    }
}

/// Starts libsrt once per process and sends its warnings and errors to `tracing`.
fn startup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain library calls; the handler is a function with the declared signature.
        unsafe {
            srt_startup();
            srt_setlogflags(1 | 2 | 4 | 8);
            srt_setloghandler(std::ptr::null_mut(), log_to_tracing);
            srt_setloglevel(libc::LOG_ERR);
        }
    });
}

/// What the listener asks of its owner for each caller, before the handshake completes.
pub trait Admission: Send + Sync {
    /// The passphrase the caller with this stream id must prove, or why it is refused.
    fn passphrase(&self, stream_id: &str, peer: Option<SocketAddr>) -> Result<String, String>;
}

struct CallbackState {
    admission: Arc<dyn Admission>,
}

unsafe extern "C" fn on_caller(
    opaque: *mut c_void,
    ns: SrtSocket,
    _hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int {
    let decide = || {
        // SAFETY: `opaque` is the `CallbackState` the listener owns for as long as the socket
        // is open (it is freed only after the listening socket is closed).
        let state = unsafe { &*(opaque as *const CallbackState) };
        let sid = if stream_id.is_null() {
            String::new()
        } else {
            // SAFETY: libsrt passes a NUL-terminated string (at most 512 bytes).
            unsafe { CStr::from_ptr(stream_id) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: libsrt passes the peer's address, of the size its family says.
        let peer = unsafe { sockaddr_to_std(peer) };
        match state.admission.passphrase(&sid, peer) {
            Ok(pass) => {
                let rc = unsafe {
                    srt_setsockflag(
                        ns,
                        SRTO_PASSPHRASE,
                        pass.as_ptr() as *const c_void,
                        pass.len() as c_int,
                    )
                };
                if rc == SRT_ERROR {
                    warn!(stream_id = %sid.escape_debug(), error = %last_error("set passphrase"), "caller refused: passphrase not set");
                    -1
                } else {
                    0
                }
            }
            Err(why) => {
                warn!(stream_id = %sid.escape_debug(), peer = ?peer, reason = %why, "caller refused");
                -1
            }
        }
    };
    // Never unwind into C.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide)).unwrap_or(-1)
}

/// # Safety
/// `sa` is null or points to a `sockaddr_in`/`sockaddr_in6` as its family says.
unsafe fn sockaddr_to_std(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    match (*sa).sa_family as c_int {
        libc::AF_INET => {
            let a = &*(sa as *const libc::sockaddr_in);
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            let a = &*(sa as *const libc::sockaddr_in6);
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

fn set_int(s: SrtSocket, opt: c_int, v: c_int, what: &'static str) -> Result<(), SrtError> {
    // SAFETY: the option takes an int.
    check(
        unsafe {
            srt_setsockflag(
                s,
                opt,
                &v as *const c_int as *const c_void,
                std::mem::size_of::<c_int>() as c_int,
            )
        },
        what,
    )
}

/// A listening SRT socket.
pub struct Listener {
    sock: SrtSocket,
    state: *mut CallbackState,
}

// SAFETY: the socket is an integer handle libsrt guards itself; `state` is only read by the
// callback (through `&`) and freed in `Drop` after the socket is closed.
unsafe impl Send for Listener {}
unsafe impl Sync for Listener {}

impl Listener {
    pub fn bind(
        addr: SocketAddr,
        latency: Duration,
        admission: Arc<dyn Admission>,
    ) -> Result<Listener, SrtError> {
        startup();
        // SAFETY: plain call.
        let sock = unsafe { srt_create_socket() };
        if sock == SRT_INVALID_SOCK {
            return Err(last_error("create socket"));
        }
        let state = Box::into_raw(Box::new(CallbackState { admission }));
        let listener = Listener { sock, state };
        set_int(
            sock,
            SRTO_RCVLATENCY,
            latency.as_millis().min(60_000) as c_int,
            "receive latency",
        )?;
        let (storage, len) = std_to_sockaddr(addr);
        // SAFETY: `storage` holds a valid address of `len` bytes.
        check(
            unsafe { srt_bind(sock, &storage as *const _ as *const libc::sockaddr, len) },
            "bind",
        )?;
        // SAFETY: the state outlives the socket (freed in Drop after srt_close).
        check(
            unsafe { srt_listen_callback(sock, on_caller, state as *mut c_void) },
            "listen callback",
        )?;
        check(unsafe { srt_listen(sock, 64) }, "listen")?;
        Ok(listener)
    }

    /// Blocks until a caller completed its handshake (right stream id and passphrase).
    /// An error once the listener is closed.
    pub fn accept(&self) -> Result<Connection, SrtError> {
        // SAFETY: the buffer is large enough for any address; libsrt writes `len` bytes.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        let s = unsafe {
            srt_accept(
                self.sock,
                &mut storage as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        if s == SRT_INVALID_SOCK {
            return Err(last_error("accept"));
        }
        let peer = unsafe { sockaddr_to_std(&storage as *const _ as *const libc::sockaddr) };
        let conn = Connection { sock: s, peer };
        set_int(s, SRTO_RCVSYN, 1, "blocking receive")?;
        set_int(s, SRTO_RCVTIMEO, 1000, "receive timeout")?;
        Ok(conn)
    }

    /// Closes the listening socket: a blocked `accept` returns an error.
    pub fn close(&self) {
        // SAFETY: closing twice only returns an error.
        unsafe { srt_close(self.sock) };
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
        // SAFETY: created by Box::into_raw in `bind`; the socket is closed, so no callback runs.
        drop(unsafe { Box::from_raw(self.state) });
    }
}

fn std_to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, c_int) {
    // SAFETY: zeroed sockaddr_storage is a valid value; we write the family's struct into it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as c_int)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as c_int)
        }
    }
}

/// An accepted caller.
pub struct Connection {
    sock: SrtSocket,
    pub peer: Option<SocketAddr>,
}

/// What one receive gave.
pub enum Received {
    Data(usize),
    /// Nothing within the receive timeout (1 s); the connection is still up.
    Idle,
    /// The caller went away or the connection broke.
    Closed,
}

impl Connection {
    /// The caller's stream id (checked by the listen callback already).
    pub fn stream_id(&self) -> String {
        let mut buf = [0u8; 600];
        let mut len = buf.len() as c_int;
        // SAFETY: libsrt writes at most `len` bytes and sets `len`.
        let rc = unsafe {
            srt_getsockflag(
                self.sock,
                SRTO_STREAMID,
                buf.as_mut_ptr() as *mut c_void,
                &mut len,
            )
        };
        if rc == SRT_ERROR || len < 0 {
            return String::new();
        }
        let len = (len as usize).min(buf.len());
        String::from_utf8_lossy(&buf[..len])
            .trim_end_matches('\0')
            .to_owned()
    }

    /// Receives one SRT message (up to `buf.len()` bytes), waiting at most a second.
    pub fn recv(&self, buf: &mut [u8]) -> Received {
        // SAFETY: libsrt writes at most `len` bytes into `buf`.
        let n = unsafe {
            srt_recvmsg(
                self.sock,
                buf.as_mut_ptr() as *mut c_char,
                buf.len().min(c_int::MAX as usize) as c_int,
            )
        };
        if n > 0 {
            return Received::Data(n as usize);
        }
        // A timeout and a broken connection both return an error: the state tells them apart.
        if unsafe { srt_getsockstate(self.sock) } == SRTS_CONNECTED {
            Received::Idle
        } else {
            Received::Closed
        }
    }

    /// A handle that can close this connection from another thread (a newer publisher of the
    /// same camera replaces this one).
    pub fn closer(&self) -> Closer {
        Closer(self.sock)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: closing an already closed socket only returns an error.
        unsafe { srt_close(self.sock) };
    }
}

/// Closes a connection from elsewhere; its reader's next `recv` returns `Closed`.
#[derive(Clone, Copy, Debug)]
pub struct Closer(SrtSocket);

impl Closer {
    pub fn close(&self) {
        // SAFETY: libsrt ignores closing an unknown or closed socket id (ids are not reused
        // while the process lives: libsrt allocates them decreasing from a random start).
        unsafe { srt_close(self.0) };
    }
}

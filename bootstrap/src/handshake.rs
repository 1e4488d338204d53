//! The bootstrap handshake on the daemon socket: a few text lines, readable in `strace`.
//!
//! ```text
//! process -> daemon   ATTACH <session> <token>
//! daemon  -> process  TRAP <nr>,<nr>,...      (install a filter trapping these syscalls)
//!                     SKIP                    (this program is in the skip list)
//!                     ERR <message>
//! process -> daemon   LISTENER <fd>           (the daemon takes it with pidfd_getfd)
//!                     REGISTER                (already under the session's filter)
//! daemon  -> process  OK | ERR <message>
//! ```
//!
//! The daemon identifies the process by the socket's peer credentials, never by what it says.

/// A line the bootstrapping process sends.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    Attach { session: &'a str, token: &'a str },
    Listener { fd: i32 },
    Register,
}

/// A line the daemon answers.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Trap(Vec<u32>),
    Skip,
    Ok,
    Err(String),
}

/// Every handshake connection starts with this word; the daemon uses it to tell a bootstrap
/// from other clients of its socket.
pub const FIRST_WORD: &str = "ATTACH";

impl<'a> Request<'a> {
    pub fn encode(&self) -> String {
        match self {
            Request::Attach { session, token } => format!("{FIRST_WORD} {session} {token}\n"),
            Request::Listener { fd } => format!("LISTENER {fd}\n"),
            Request::Register => "REGISTER\n".to_string(),
        }
    }

    pub fn decode(line: &'a str) -> Option<Request<'a>> {
        let mut words = line.trim_end().split(' ');
        match words.next()? {
            FIRST_WORD => {
                let session = words.next().filter(|s| !s.is_empty())?;
                let token = words.next().filter(|s| !s.is_empty())?;
                words.next().is_none().then_some(Request::Attach { session, token })
            }
            "LISTENER" => Some(Request::Listener { fd: words.next()?.parse().ok().filter(|fd| *fd >= 0)? }),
            "REGISTER" => words.next().is_none().then_some(Request::Register),
            _ => None,
        }
    }
}

impl Reply {
    pub fn encode(&self) -> String {
        match self {
            Reply::Trap(nrs) => {
                let list: Vec<String> = nrs.iter().map(u32::to_string).collect();
                format!("TRAP {}\n", list.join(","))
            }
            Reply::Skip => "SKIP\n".into(),
            Reply::Ok => "OK\n".into(),
            Reply::Err(msg) => format!("ERR {}\n", msg.replace('\n', " ")),
        }
    }

    pub fn decode(line: &str) -> Option<Reply> {
        let line = line.trim_end();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "TRAP" => rest.split(',').map(|n| n.parse().ok()).collect::<Option<Vec<u32>>>().map(Reply::Trap),
            "SKIP" => Some(Reply::Skip),
            "OK" => Some(Reply::Ok),
            "ERR" => Some(Reply::Err(rest.to_string())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for req in [Request::Attach { session: "s1", token: "abc" }, Request::Listener { fd: 7 }, Request::Register] {
            let line = req.encode();
            assert_eq!(Request::decode(&line), Some(req));
        }
    }

    #[test]
    fn replies_round_trip() {
        for reply in [Reply::Trap(vec![257, 42]), Reply::Skip, Reply::Ok, Reply::Err("no such session".into())] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(Request::decode("ATTACH onlysession\n"), None);
        assert_eq!(Request::decode("ATTACH a b c\n"), None);
        assert_eq!(Request::decode("LISTENER -1\n"), None);
        assert_eq!(Request::decode("LISTENER x\n"), None);
        assert_eq!(Request::decode("HELLO\n"), None);
        assert_eq!(Reply::decode("TRAP 1,x\n"), None);
        assert_eq!(Reply::decode("MAYBE\n"), None);
    }
}

//! The TCP ports the target listens on, read from its `/proc/PID/net/tcp{,6}` (the tables of
//! its network namespace), for the launch doctor's port check.

use std::io;

/// The sorted, distinct ports in state LISTEN of the network namespace of `pid`.
pub fn listening(pid: i32) -> io::Result<Vec<u16>> {
    let mut ports = Vec::new();
    let mut read_any = None;
    for table in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            Ok(text) => {
                ports.extend(parse(&text));
                read_any = Some(Ok(()));
            }
            Err(e) => {
                read_any.get_or_insert(Err(e));
            }
        }
    }
    read_any.unwrap_or(Ok(()))?;
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// Ports of the LISTEN rows (`st` 0A) of one table; `local_address` is `HEXADDR:HEXPORT`.
fn parse(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(3) != Some(&"0A") {
            return None;
        }
        u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_rows_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0A00C6C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1
";
        assert_eq!(parse(table).collect::<Vec<_>>(), [80]);
    }

    #[test]
    fn our_own_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening(std::process::id() as i32).unwrap().contains(&port));
        assert!(listening(i32::MAX).is_err(), "no such process");
    }
}

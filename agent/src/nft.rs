//! The agent's redirect rules: one nftables table in the target's network namespace.
//!
//! The table is named `tether_<agent pid>_<agent start time>` (the start time in clock ticks
//! since boot, field 22 of `/proc/self/stat`), so a table whose agent is gone is recognisable
//! even after the pid was reused. It holds one set, `steal`, of the target ports being stolen,
//! and one chain:
//!
//! ```text
//! prerouting (filter, mangle - 10):  meta mark MARK return
//!     meta nfproto ipv4 fib daddr type local tcp dport @steal tproxy ip to :P4
//!     meta nfproto ipv6 fib daddr type local tcp dport @steal tproxy ip6 to :P6
//! ```
//!
//! `P4`/`P6` are the agent's transparent listeners (`IP_TRANSPARENT`) inside the namespace.
//! TPROXY rather than NAT `redirect`, because it leaves no state behind: the accepted socket's
//! own address *is* the original destination (`getsockname`), and once accepted, a connection
//! is an ordinary established socket that the kernel finds by its addresses with or without
//! the rule. So stolen connections outlive the rule (unsubscribing, or a `kill -9` of the agent),
//! whereas NATed connections die with the last NAT chain of the namespace. Clients inside the
//! target's own namespace are covered too: their packets come back through `prerouting` on
//! loopback. Sockets the agent opens to the real target port carry [`BYPASS_MARK`] (`SO_MARK`)
//! and skip the rule. Subscribing and unsubscribing only add or delete set elements.
//!
//! **Cleanup that survives `kill -9`.** The table has nftables' `owner` flag: the kernel removes
//! an owned table as soon as the netlink socket that created it closes, and the agent keeps that
//! socket (close-on-exec) for the table's life. When the agent dies in any way, the kernel closes
//! it and the table is gone at once. Owned tables cannot be changed by anyone else (so a sweeping
//! agent can never break a live agent's rules). On kernels without the `owner` flag (before 5.12)
//! the table is created plain and a [`guard`](crate::guard) process deletes it when the agent's
//! pipe closes. Either way, a new agent deletes stale `tether_*` tables of dead agents when it
//! creates its own.
//!
//! **No `nft` binary.** The agent speaks nf_tables' netlink protocol itself ([`crate::netlink`]):
//! every change is one batch (`NFNL_MSG_BATCH_BEGIN` … `END`) that the kernel applies whole or not
//! at all, and each message in it is acknowledged, so an error is the kernel's errno for it. The
//! messages are, byte for byte, those `nft` 1.0.6 sends for the same rules (the unit tests
//! compare them with a capture), apart from the acknowledgement flag.

use std::io;
use std::os::fd::OwnedFd;

use crate::netlink::{self, Msg, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, Socket};

/// The mark of the agent's own connections to the target's ports ("tt" 0x7474 + 1).
pub const BYPASS_MARK: u32 = 0x7474_0001;

/// nf_tables' netlink vocabulary (`linux/netfilter/nf_tables.h`, `nfnetlink.h`).
mod nf {
    pub const SUBSYS: u16 = 10; // NFNL_SUBSYS_NFTABLES
    pub const BATCH_BEGIN: u16 = 0x10;
    pub const BATCH_END: u16 = 0x11;
    pub const NEWTABLE: u16 = 0;
    pub const GETTABLE: u16 = 1;
    pub const DELTABLE: u16 = 2;
    pub const NEWCHAIN: u16 = 3;
    pub const NEWRULE: u16 = 6;
    pub const NEWSET: u16 = 9;
    pub const NEWSETELEM: u16 = 12;
    pub const DELSETELEM: u16 = 14;
    pub const FAMILY_UNSPEC: u8 = 0;
    pub const FAMILY_INET: u8 = 1;
    pub const NFPROTO_IPV4: u8 = 2;
    pub const NFPROTO_IPV6: u8 = 10;
    pub const TABLE_NAME: u16 = 1;
    pub const TABLE_FLAGS: u16 = 2;
    pub const TABLE_F_OWNER: u32 = 2;
    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_ID: u16 = 10;
    pub const SET_USERDATA: u16 = 13;
    /// nft's datatype number of `inet_service` (kept for `nft list` to print ports).
    pub const TYPE_INET_SERVICE: u32 = 13;
    pub const CHAIN_TABLE: u16 = 1;
    pub const CHAIN_NAME: u16 = 3;
    pub const CHAIN_HOOK: u16 = 4;
    pub const CHAIN_TYPE: u16 = 7;
    pub const HOOK_HOOKNUM: u16 = 1;
    pub const HOOK_PRIORITY: u16 = 2;
    pub const INET_PRE_ROUTING: u32 = 0;
    /// `mangle - 10`: mangle is -150.
    pub const PRIORITY: i32 = -160;
    pub const RULE_TABLE: u16 = 1;
    pub const RULE_CHAIN: u16 = 2;
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const LIST_ELEM: u16 = 1;
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;
    pub const REG_VERDICT: u32 = 0;
    pub const REG_1: u32 = 1;
    pub const META_DREG: u16 = 1;
    pub const META_KEY: u16 = 2;
    pub const META_MARK: u32 = 3;
    pub const META_NFPROTO: u32 = 15;
    pub const META_L4PROTO: u32 = 16;
    pub const CMP_SREG: u16 = 1;
    pub const CMP_OP: u16 = 2;
    pub const CMP_DATA: u16 = 3;
    pub const CMP_EQ: u32 = 0;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;
    pub const RETURN: i32 = -5;
    pub const IMMEDIATE_DREG: u16 = 1;
    pub const IMMEDIATE_DATA: u16 = 2;
    pub const FIB_DREG: u16 = 1;
    pub const FIB_RESULT: u16 = 2;
    pub const FIB_FLAGS: u16 = 3;
    pub const FIB_RESULT_ADDRTYPE: u32 = 3;
    pub const FIB_F_DADDR: u32 = 2;
    pub const RTN_LOCAL: u32 = 2;
    pub const PAYLOAD_DREG: u16 = 1;
    pub const PAYLOAD_BASE: u16 = 2;
    pub const PAYLOAD_OFFSET: u16 = 3;
    pub const PAYLOAD_LEN: u16 = 4;
    pub const PAYLOAD_TRANSPORT: u32 = 2;
    pub const LOOKUP_SET: u16 = 1;
    pub const LOOKUP_SREG: u16 = 2;
    pub const LOOKUP_SET_ID: u16 = 4;
    pub const TPROXY_FAMILY: u16 = 1;
    pub const TPROXY_REG_PORT: u16 = 3;
    pub const SET_ELEM_LIST_TABLE: u16 = 1;
    pub const SET_ELEM_LIST_SET: u16 = 2;
    pub const SET_ELEM_LIST_ELEMENTS: u16 = 3;
    pub const SET_ELEM_LIST_SET_ID: u16 = 4;
    pub const SET_ELEM_KEY: u16 = 1;
}

/// The one set's name and its id inside a batch.
const SET: &str = "steal";
const SET_ID: u32 = 1;
const CHAIN: &str = "prerouting";

/// A message of nf_tables' subsystem.
fn nft_msg(kind: u16, flags: u16, family: u8) -> Msg {
    Msg::new((nf::SUBSYS << 8) | kind, flags | NLM_F_ACK, family, 0)
}

/// `msgs` between the batch markers.
fn batch(msgs: Vec<Msg>) -> Vec<Msg> {
    let mut all = vec![Msg::new(nf::BATCH_BEGIN, 0, nf::FAMILY_UNSPEC, nf::SUBSYS)];
    all.extend(msgs);
    all.push(Msg::new(nf::BATCH_END, 0, nf::FAMILY_UNSPEC, nf::SUBSYS));
    all
}

/// One expression of a rule: `name` and its attributes written by `data`.
fn expr(m: &mut Msg, name: &str, data: impl FnOnce(&mut Msg)) {
    m.nest(nf::LIST_ELEM).str(nf::EXPR_NAME, name).nest(nf::EXPR_DATA);
    data(m);
    m.end().end();
}

fn meta(m: &mut Msg, key: u32) {
    expr(m, "meta", |m| {
        m.u32(nf::META_KEY, key).u32(nf::META_DREG, nf::REG_1);
    });
}

fn cmp_eq(m: &mut Msg, value: &[u8]) {
    expr(m, "cmp", |m| {
        m.u32(nf::CMP_SREG, nf::REG_1).u32(nf::CMP_OP, nf::CMP_EQ);
        m.nest(nf::CMP_DATA).bytes(nf::DATA_VALUE, value).end();
    });
}

fn new_table(name: &str, owner: bool) -> Msg {
    let mut m = nft_msg(nf::NEWTABLE, 0, nf::FAMILY_INET);
    m.str(nf::TABLE_NAME, name).u32(nf::TABLE_FLAGS, if owner { nf::TABLE_F_OWNER } else { 0 });
    m
}

fn del_table(name: &str) -> Msg {
    let mut m = nft_msg(nf::DELTABLE, 0, nf::FAMILY_INET);
    m.str(nf::TABLE_NAME, name);
    m
}

fn new_set(table: &str) -> Msg {
    let mut m = nft_msg(nf::NEWSET, NLM_F_CREATE, nf::FAMILY_INET);
    m.str(nf::SET_TABLE, table)
        .str(nf::SET_NAME, SET)
        .u32(nf::SET_FLAGS, 0)
        .u32(nf::SET_KEY_TYPE, nf::TYPE_INET_SERVICE)
        .u32(nf::SET_KEY_LEN, 2)
        .u32(nf::SET_ID, SET_ID)
        // nft's user data: the key is big endian (so `nft list` prints ports, not swapped bytes).
        .bytes(nf::SET_USERDATA, &[0, 4, 2, 0, 0, 0]);
    m
}

fn new_chain(table: &str) -> Msg {
    let mut m = nft_msg(nf::NEWCHAIN, NLM_F_CREATE, nf::FAMILY_INET);
    m.str(nf::CHAIN_TABLE, table).str(nf::CHAIN_NAME, CHAIN).str(nf::CHAIN_TYPE, "filter");
    m.nest(nf::CHAIN_HOOK)
        .u32(nf::HOOK_HOOKNUM, nf::INET_PRE_ROUTING)
        .u32(nf::HOOK_PRIORITY, nf::PRIORITY as u32)
        .end();
    m
}

fn new_rule(table: &str, exprs: impl FnOnce(&mut Msg)) -> Msg {
    // NLM_F_APPEND: after the rules already in the chain.
    let mut m = nft_msg(nf::NEWRULE, NLM_F_CREATE | 0x800, nf::FAMILY_INET);
    m.str(nf::RULE_TABLE, table).str(nf::RULE_CHAIN, CHAIN).nest(nf::RULE_EXPRESSIONS);
    exprs(&mut m);
    m.end();
    m
}

/// `meta mark MARK return`
fn bypass_rule(table: &str) -> Msg {
    new_rule(table, |m| {
        meta(m, nf::META_MARK);
        cmp_eq(m, &BYPASS_MARK.to_ne_bytes());
        expr(m, "immediate", |m| {
            m.u32(nf::IMMEDIATE_DREG, nf::REG_VERDICT);
            m.nest(nf::IMMEDIATE_DATA).nest(nf::DATA_VERDICT).u32(nf::VERDICT_CODE, nf::RETURN as u32).end().end();
        });
    })
}

/// `meta nfproto FAMILY fib daddr type local tcp dport @steal tproxy FAMILY to :PORT`
fn tproxy_rule(table: &str, nfproto: u8, port: u16) -> Msg {
    new_rule(table, |m| {
        meta(m, nf::META_NFPROTO);
        cmp_eq(m, &[nfproto]);
        expr(m, "fib", |m| {
            m.u32(nf::FIB_FLAGS, nf::FIB_F_DADDR)
                .u32(nf::FIB_RESULT, nf::FIB_RESULT_ADDRTYPE)
                .u32(nf::FIB_DREG, nf::REG_1);
        });
        cmp_eq(m, &nf::RTN_LOCAL.to_ne_bytes());
        meta(m, nf::META_L4PROTO);
        cmp_eq(m, &[libc::IPPROTO_TCP as u8]);
        expr(m, "payload", |m| {
            m.u32(nf::PAYLOAD_DREG, nf::REG_1)
                .u32(nf::PAYLOAD_BASE, nf::PAYLOAD_TRANSPORT)
                .u32(nf::PAYLOAD_OFFSET, 2)
                .u32(nf::PAYLOAD_LEN, 2);
        });
        expr(m, "lookup", |m| {
            m.u32(nf::LOOKUP_SREG, nf::REG_1).str(nf::LOOKUP_SET, SET).u32(nf::LOOKUP_SET_ID, SET_ID);
        });
        expr(m, "immediate", |m| {
            m.u32(nf::IMMEDIATE_DREG, nf::REG_1);
            m.nest(nf::IMMEDIATE_DATA).bytes(nf::DATA_VALUE, &port.to_be_bytes()).end();
        });
        expr(m, "tproxy", |m| {
            m.u32(nf::TPROXY_FAMILY, nfproto as u32).u32(nf::TPROXY_REG_PORT, nf::REG_1);
        });
    })
}

/// Adds (`add`) or deletes the element `port` of the set.
fn set_elem(table: &str, port: u16, add: bool) -> Msg {
    let (kind, flags) = if add { (nf::NEWSETELEM, NLM_F_CREATE) } else { (nf::DELSETELEM, 0) };
    let mut m = nft_msg(kind, flags, nf::FAMILY_INET);
    m.str(nf::SET_ELEM_LIST_TABLE, table).str(nf::SET_ELEM_LIST_SET, SET);
    if add {
        m.u32(nf::SET_ELEM_LIST_SET_ID, SET_ID);
    }
    m.nest(nf::SET_ELEM_LIST_ELEMENTS)
        .nest(nf::LIST_ELEM)
        .nest(nf::SET_ELEM_KEY)
        .bytes(nf::DATA_VALUE, &port.to_be_bytes())
        .end()
        .end()
        .end();
    m
}

/// The messages that create the table `name` with its set, chain and rules.
fn create_messages(name: &str, v4: u16, v6: u16, owner: bool) -> Vec<Msg> {
    let mut msgs = vec![new_table(name, owner), new_set(name), new_chain(name), bypass_rule(name)];
    for (nfproto, port) in [(nf::NFPROTO_IPV4, v4), (nf::NFPROTO_IPV6, v6)] {
        if port != 0 {
            msgs.push(tproxy_rule(name, nfproto, port));
        }
    }
    batch(msgs)
}

/// A netlink failure in words, with what was being done.
fn explain(what: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => "; the agent needs NET_ADMIN in the target's network namespace",
        Some(libc::ENOENT) => "; the kernel lacks an nf_tables module (nft_tproxy, nft_fib_inet, nf_tables)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("nftables: {what}: {e}{hint}"))
}

/// Names of the `inet` tables in the socket's namespace.
fn list_tables(sock: &mut Socket) -> io::Result<Vec<(u8, String)>> {
    let req = Msg::new((nf::SUBSYS << 8) | nf::GETTABLE, NLM_F_DUMP, nf::FAMILY_UNSPEC, 0);
    let replies = sock.dump(&req)?;
    Ok(replies
        .into_iter()
        .filter(|r| r.kind == (nf::SUBSYS << 8) | nf::NEWTABLE)
        .filter_map(|r| {
            let name = netlink::attrs(&r.attrs).into_iter().find(|(k, _)| *k == nf::TABLE_NAME)?.1;
            Some((r.family, netlink::attr_str(name)))
        })
        .collect())
}

/// Deletes the `inet` table `name` of the namespace `netns` (for the guard). The error is the
/// kernel's own (`ENOENT`: no such table).
pub fn delete_table(netns: &OwnedFd, name: &str) -> io::Result<()> {
    Socket::in_netns(netns)?.transact(&batch(vec![del_table(name)]), true)
}

/// Start time of a process in clock ticks since boot, or `None` when it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..." — fields after the last ')' start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This agent's table name.
pub fn table_name() -> String {
    let pid = std::process::id();
    format!("tether_{pid}_{}", start_time(pid).unwrap_or(0))
}

/// The agent a table name belongs to: `(pid, start time)`.
pub fn parse_table_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("tether_")?;
    let (pid, start) = rest.split_once('_')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Deletes the `tether_*` tables whose agent is gone. Tables of live agents, and owned tables
/// (which nobody else may delete), are left alone. Returns the names deleted.
fn sweep_stale(sock: &mut Socket) -> Vec<String> {
    let Ok(list) = list_tables(sock) else {
        return Vec::new();
    };
    let mut deleted = Vec::new();
    for (family, name) in list {
        let Some((pid, start)) = parse_table_name(&name) else {
            continue;
        };
        if family != nf::FAMILY_INET || start_time(pid) == Some(start) {
            continue; // its agent still runs
        }
        match sock.transact(&batch(vec![del_table(&name)]), true) {
            Ok(()) => {
                tracing::info!(table = name, "deleted the stale table of a dead agent");
                deleted.push(name);
            }
            Err(e) => tracing::debug!(table = name, err = %e, "could not delete a stale table"),
        }
    }
    deleted
}

/// The live table. Dropping it removes it from the kernel.
pub struct Table {
    name: String,
    /// The socket that created the table: closing it removes an owned table.
    sock: Socket,
    owner: bool,
    guard: Option<std::process::Child>,
}

impl Table {
    /// Creates the table with the rules sending to the agent's listeners on `v4` and `v6` (0: none).
    pub fn create(netns: &OwnedFd, v4: u16, v6: u16) -> io::Result<Table> {
        let name = table_name();
        let mut sock = Socket::in_netns(netns).map_err(|e| explain("opening the netlink socket", e))?;
        let stale = sweep_stale(&mut sock);
        if !stale.is_empty() {
            tracing::info!(?stale, "swept stale tables");
        }
        let owner = match sock.transact(&create_messages(&name, v4, v6, true), true) {
            Ok(()) => true,
            // Kernels before 5.12 refuse the unknown flag.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                tracing::warn!(err = %e, "this kernel has no owned nftables tables; a guard process will clean up");
                sock.transact(&create_messages(&name, v4, v6, false), true)
                    .map_err(|e| explain(&format!("creating table inet {name}"), e))?;
                false
            }
            Err(e) => return Err(explain(&format!("creating table inet {name}"), e)),
        };
        let mut t = Table { name, sock, owner, guard: None };
        if !owner {
            t.guard = Some(crate::guard::spawn(netns, &t.name)?);
        }
        tracing::info!(table = %t.name, owner, v4, v6, "redirect table created");
        Ok(t)
    }

    /// Starts redirecting new connections to the target's `port`.
    pub fn add_port(&mut self, port: u16) -> io::Result<()> {
        self.sock
            .transact(&batch(vec![set_elem(&self.name, port, true)]), true)
            .map_err(|e| explain(&format!("adding port {port} to set {SET} of table {}", self.name), e))
    }

    /// Stops redirecting new connections to `port`.
    pub fn remove_port(&mut self, port: u16) -> io::Result<()> {
        self.sock
            .transact(&batch(vec![set_elem(&self.name, port, false)]), true)
            .map_err(|e| explain(&format!("removing port {port} from set {SET} of table {}", self.name), e))
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // An owned table goes with its socket (dropped right after this); a plain one is deleted.
        if let Err(e) = self.sock.transact(&batch(vec![del_table(&self.name)]), true) {
            tracing::debug!(table = %self.name, err = %e, "deleting the table");
        }
        if let Some(mut g) = self.guard.take() {
            // The guard's pipe closes with the child handle's stdin; it finds nothing to delete.
            drop(g.stdin.take());
            let _ = g.wait();
        }
        tracing::info!(table = %self.name, owner = self.owner, "redirect table removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What `nft` 1.0.6 sends (`strace -e trace=sendmsg -e write=3 nft ...`) for the same rules:
    // `-f` of the create script (table `tether_1_2` with the owner flag, listeners 40001 and
    // 40002), `add element ... { 7001 }`, `delete element ... { 7001 }`, `delete table ...`.
    const NFT_CREATE: &str = concat!(
        "140000001000010000000000000000000000000a2c000000000a01000100000000000000010000000f00010074657468",
        "65725f315f32000008000200000000025c000000090a01040200000000000000010000000f0001007465746865725f31",
        "5f3200000a000200737465616c0000000800030000000000080004000000000d080005000000000208000a0000000001",
        "0a000d00000402000000000054000000030a01040300000000000000010000000f0001007465746865725f315f320000",
        "0f000300707265726f7574696e6700000b00070066696c746572000014000480080001000000000008000200ffffff60",
        "b8000000060a010c0400000000000000010000000f0001007465746865725f315f3200000f000200707265726f757469",
        "6e6700008400048024000180090001006d6574610000000014000280080002000000000308000100000000012c000180",
        "08000100636d700020000280080001000000000108000200000000000c0003800800010001007474300001800e000100",
        "696d6d6564696174650000001c0002800800010000000000100002800c00028008000100fffffffbe0010000060a010c",
        "0500000000000000010000000f0001007465746865725f315f3200000f000200707265726f7574696e670000ac010480",
        "24000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d7000",
        "20000280080001000000000108000200000000000c00038005000100020000002800018008000100666962001c000280",
        "0800030000000002080002000000000308000100000000012c00018008000100636d7000200002800800010000000001",
        "08000200000000000c000380080001000200000024000180090001006d65746100000000140002800800020000000010",
        "08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c00038005000100",
        "06000000340001800c0001007061796c6f61640024000280080001000000000108000200000000020800030000000002",
        "0800040000000002300001800b0001006c6f6f6b757000002000028008000200000000010a000100737465616c000000",
        "08000400000000012c0001800e000100696d6d6564696174650000001800028008000100000000010c00028006000100",
        "9c410000240001800b0001007470726f787900001400028008000100000000020800030000000001e0010000060a010c",
        "0600000000000000010000000f0001007465746865725f315f3200000f000200707265726f7574696e670000ac010480",
        "24000180090001006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d7000",
        "20000280080001000000000108000200000000000c000380050001000a0000002800018008000100666962001c000280",
        "0800030000000002080002000000000308000100000000012c00018008000100636d7000200002800800010000000001",
        "08000200000000000c000380080001000200000024000180090001006d65746100000000140002800800020000000010",
        "08000100000000012c00018008000100636d700020000280080001000000000108000200000000000c00038005000100",
        "06000000340001800c0001007061796c6f61640024000280080001000000000108000200000000020800030000000002",
        "0800040000000002300001800b0001006c6f6f6b757000002000028008000200000000010a000100737465616c000000",
        "08000400000000012c0001800e000100696d6d6564696174650000001800028008000100000000010c00028006000100",
        "9c420000240001800b0001007470726f7879000014000280080001000000000a08000300000000011400000011000100",
        "07000000000000000000000a",
    );
    const NFT_ADD: &str = concat!(
        "140000001000010000000000000000000000000a4c0000000c0a01040100000000000000010000000f00010074657468",
        "65725f315f3200000a000200737465616c000000080004000000000114000380100001800c000180060001001b590000",
        "140000001100010002000000000000000000000a",
    );
    const NFT_DEL: &str = concat!(
        "140000001000010000000000000000000000000a440000000e0a01000100000000000000010000000f00010074657468",
        "65725f315f3200000a000200737465616c00000014000380100001800c000180060001001b5900001400000011000100",
        "02000000000000000000000a",
    );
    const NFT_DELTABLE: &str = concat!(
        "140000001000010000000000000000000000000a24000000020a01000100000000000000010000000f00010074657468",
        "65725f315f320000140000001100010002000000000000000000000a",
    );

    /// Messages of a datagram as (type, flags without `NLM_F_ACK`, payload); sequence numbers
    /// differ and are left out.
    fn messages(data: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = data;
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let flags = u16::from_ne_bytes([rest[6], rest[7]]) & !NLM_F_ACK;
            out.push((kind, flags, rest[16..len].to_vec()));
            rest = &rest[(len + 3) & !3..];
        }
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn ours(msgs: &[Msg]) -> Vec<u8> {
        msgs.iter().enumerate().flat_map(|(i, m)| m.finish(i as u32)).collect()
    }

    #[test]
    fn the_messages_are_the_ones_nft_sends() {
        let name = "tether_1_2";
        assert_eq!(messages(&ours(&create_messages(name, 40001, 40002, true))), messages(&hex(NFT_CREATE)));
        assert_eq!(messages(&ours(&batch(vec![set_elem(name, 7001, true)]))), messages(&hex(NFT_ADD)));
        assert_eq!(messages(&ours(&batch(vec![set_elem(name, 7001, false)]))), messages(&hex(NFT_DEL)));
        assert_eq!(messages(&ours(&batch(vec![del_table(name)]))), messages(&hex(NFT_DELTABLE)));
        // Only the listeners that exist get a rule; a plain table has no flag.
        let v4_only = messages(&ours(&create_messages(name, 40001, 0, false)));
        assert_eq!(v4_only.len(), 7);
        assert_eq!(&v4_only[1].2[v4_only[1].2.len() - 4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn every_request_asks_for_an_answer() {
        for m in &create_messages("tether_1_2", 1, 2, true)[1..7] {
            let b = m.finish(1);
            assert_ne!(u16::from_ne_bytes([b[6], b[7]]) & NLM_F_ACK, 0);
        }
    }

    #[test]
    fn table_names_identify_their_agent() {
        let name = table_name();
        let (pid, start) = parse_table_name(&name).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(start_time(pid), Some(start));
        assert_eq!(parse_table_name("tether_12_34"), Some((12, 34)));
        for bad in ["filter", "tether_x_1", "tether_1", "tether__"] {
            assert_eq!(parse_table_name(bad), None, "{bad}");
        }
        // pid_max is at most 2^22.
        assert_eq!(start_time(99_999_999), None);
    }
}

/*!
`nodes`: the machines of a VLAN as its headnode sees them, gathered in the guest by
`mkheadnode-nodes` (run through the guest agent) and shown here as a table, a timeline, or
JSON.
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::model::mac::Mac;
use crate::model::nodes::{self, ago, printable, utc, Event, Node, Report};
use crate::model::vlan::Vlan;
use crate::ops::guest;
use crate::ops::session::Session;
use crate::render::seed::NODES_TOOL_PATH;
use std::time::Duration;

/// What `nodes` asks the headnode for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodesQuery {
    /// Only the machines and the published profiles (no logs): what `install` needs.
    pub brief: bool,
    /// Also each BMC's power state.
    pub power: bool,
    /// The timeline: `Some(None)` of every machine, `Some(Some(mac))` of one.
    pub events: Option<Option<Mac>>,
}

impl NodesQuery {
    /// The nodes tool's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.brief {
            args.push("--brief".into());
        }
        if self.power {
            args.push("--power".into());
        }
        match &self.events {
            None => {}
            Some(None) => args.push("--events".into()),
            Some(Some(mac)) => args.push(format!("--events={mac}")),
        }
        args
    }
}

/// How long the nodes tool may take (with `--power`, BMCs that do not answer take longest).
const NODES_LIMIT: Duration = Duration::from_secs(600);

impl Session {
    /// The report of `vlan`'s headnode on its machines.
    pub fn nodes(&self, vlan: Vlan, query: &NodesQuery) -> anyhow::Result<Report> {
        report_of(&self.agent(vlan)?, query)
    }
}

/// The report of the headnode behind `agent` on its machines.
pub fn report_of(agent: &GuestAgent, query: &NodesQuery) -> anyhow::Result<Report> {
    let status = guest::run(agent, NODES_TOOL_PATH, &query.args(), NODES_LIMIT)?;
    if !status.success() {
        return Err(failure(
            Kind::Other,
            format!(
                "{NODES_TOOL_PATH} failed in {} ({}): {}",
                agent.name(),
                status.outcome(),
                guest::output_text(&status.stderr)
            ),
        ));
    }
    nodes::parse(&String::from_utf8_lossy(&status.stdout))
}

/// Columns aligned to their widest cell, two spaces apart, no trailing blanks.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .max()
    };
    let widths: Vec<usize> = (0..columns).map(|i| width(i).unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The cells of one machine's row.
fn node_cells(node: &Node, now: f64, power: bool) -> Vec<String> {
    let show = |text: &str| printable(text, 40);
    let lease = node.lease.as_ref().map_or("-".into(), |l| {
        format!(
            "{} {}",
            show(&l.ip),
            show(l.state.as_deref().unwrap_or("?"))
        )
    });
    let loader = node.last_loader.as_ref().map_or("-".into(), |l| {
        format!("{} {}", show(&l.loader), ago(now, l.time))
    });
    let last_file = node
        .fetched
        .last()
        .and_then(|f| f.path.as_deref())
        .map_or("-".into(), show);
    let callback = node.boot_default.as_ref().map_or("-".into(), |c| {
        let status = c.status.map_or("?".into(), |s| s.to_string());
        format!("{status} {}", ago(now, c.time))
    });
    let mut cells = vec![
        show(&node.mac),
        show(&node.bmc),
        show(node.state.as_deref().unwrap_or("?")),
        printable(&node.boot_summary(), 60),
        lease,
        loader,
        last_file,
        callback,
    ];
    if power {
        cells.push(
            node.power
                .as_ref()
                .map_or("-".into(), |p| match (&p.state, &p.error) {
                    (Some(state), _) => show(state),
                    (None, Some(error)) => format!("error: {}", show(error)),
                    (None, None) => "?".into(),
                }),
        );
    }
    cells
}

/// The machines as a table: one row each.
pub fn table(report: &Report, power: bool) -> String {
    let mut header: Vec<String> = [
        "MAC",
        "BMC",
        "STATE",
        "BOOT",
        "LEASE",
        "LOADER",
        "LAST FILE",
        "BOOT-DEFAULT",
    ]
    .map(String::from)
    .to_vec();
    if power {
        header.push("POWER".into());
    }
    let mut rows = vec![header];
    rows.extend(
        report
            .nodes
            .iter()
            .map(|n| node_cells(n, report.time, power)),
    );
    aligned(&rows)
}

/// The timeline: one line per event, oldest first, times in UTC.
pub fn timeline(events: &[Event]) -> String {
    let mut rows = vec![["TIME (UTC)", "KIND", "MAC", "IP", "WHAT"]
        .map(String::from)
        .to_vec()];
    for e in events {
        rows.push(vec![
            utc(e.time),
            printable(&e.kind, 10),
            e.mac.as_deref().map_or("-".into(), |m| printable(m, 17)),
            e.ip.as_deref().map_or("-".into(), |ip| printable(ip, 15)),
            printable(&e.what, 200),
        ]);
    }
    aligned(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nodes::{Callback, Fetch, Lease, LoaderSeen, Power};

    fn node() -> Node {
        Node {
            mac: "52:54:00:0a:0b:0c".into(),
            bmc: "10.0.0.7".into(),
            state: Some("installed".into()),
            lease: Some(Lease {
                ip: "192.168.10.100".into(),
                state: Some("active".into()),
                hostname: Some("x\u{1b}]0;owned\u{7}".into()),
                ..Lease::default()
            }),
            last_loader: Some(LoaderSeen {
                loader: "bios".into(),
                time: 940.0,
                path: Some("pxelinux.0".into()),
            }),
            fetched: vec![Fetch {
                time: 950.0,
                via: "tftp".into(),
                path: Some("smoke/initrd.gz\u{1b}[31m".into()),
                status: None,
            }],
            boot_default: Some(Callback {
                time: 990.0,
                status: Some(200),
                from: Some("192.168.10.100".into()),
            }),
            power: Some(Power {
                state: None,
                error: Some("no answer".into()),
            }),
            ..Node::default()
        }
    }

    #[test]
    fn the_table_has_a_row_per_machine_and_escapes_what_nodes_chose() {
        let report = Report {
            time: 1000.0,
            nodes: vec![node(), Node::default()],
            ..Report::default()
        };
        let t = table(&report, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert_eq!(lines[0].find("STATE"), lines[1].find("installed"), "{t}");
        assert_eq!(
            lines[0].find("LOADER"),
            lines[1].find("bios 60s ago"),
            "{t}"
        );
        assert!(lines[1].contains("smoke/initrd.gz\\u{1b}[31m"), "{t}");
        assert!(
            lines[1].contains("200 10s ago") && lines[1].contains("error: no answer"),
            "{t}"
        );
        assert!(!t.contains('\u{1b}'), "{t}");
        assert!(lines[2].contains("local"), "{t}");
        assert!(!table(&report, false).contains("POWER"));
    }

    #[test]
    fn the_timeline_is_in_utc() {
        let events = vec![Event {
            time: 86_400.0,
            kind: "tftp".into(),
            what: "RRQ pxelinux.0".into(),
            ip: Some("192.168.10.100".into()),
            mac: None,
            ..Event::default()
        }];
        let t = timeline(&events);
        assert!(
            t.lines()
                .nth(1)
                .unwrap()
                .starts_with("1970-01-02 00:00:00  tftp  -"),
            "{t}"
        );
    }

    #[test]
    fn the_query_becomes_argv() {
        let mac: Mac = "52:54:00:0A:0B:0C".parse().unwrap();
        let q = NodesQuery {
            brief: false,
            power: true,
            events: Some(Some(mac)),
        };
        assert_eq!(q.args(), vec!["--power", "--events=52:54:00:0a:0b:0c"]);
        assert!(NodesQuery::default().args().is_empty());
    }
}

/*!
The QEMU guest agent's protocol, as far as mkheadnode speaks it: `guest-ping`, and running a
program in the guest with `guest-exec` (its argv given as a list, never through a shell, its
output captured) and `guest-exec-status` until it has exited. Requests are built and replies
parsed here, purely; the calls go through libvirt (`host::agent`).
*/

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

/// The `guest-ping` request.
pub fn ping_request() -> String {
    json!({"execute": "guest-ping"}).to_string()
}

/// The `guest-exec` request that runs `path` with `args` (each one argv entry) and captures its
/// standard output and error.
pub fn exec_request(path: &str, args: &[String]) -> String {
    json!({
        "execute": "guest-exec",
        "arguments": {"path": path, "arg": args, "capture-output": true}
    })
    .to_string()
}

/// The `guest-exec-status` request for the process `pid`.
pub fn status_request(pid: i64) -> String {
    json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}).to_string()
}

/// A reply: `{"return": ...}`, or `{"error": {"class": ..., "desc": ...}}` from the agent.
#[derive(Debug, Deserialize)]
struct Reply<T> {
    #[serde(rename = "return")]
    value: Option<T>,
    error: Option<AgentError>,
}

#[derive(Debug, Deserialize)]
struct AgentError {
    #[serde(default)]
    class: String,
    #[serde(default)]
    desc: String,
}

fn parse_reply<T: DeserializeOwned>(reply: &str, what: &str) -> anyhow::Result<T> {
    let reply: Reply<T> =
        serde_json::from_str(reply).with_context(|| format!("reading the agent's {what} reply"))?;
    match (reply.value, reply.error) {
        (_, Some(e)) => bail!("the guest agent refused {what}: {} ({})", e.desc, e.class),
        (Some(value), None) => Ok(value),
        (None, None) => bail!("the guest agent's {what} reply has neither a return nor an error"),
    }
}

#[derive(Debug, Deserialize)]
struct Pid {
    pid: i64,
}

/// The process id in a `guest-exec` reply.
pub fn parse_exec_reply(reply: &str) -> anyhow::Result<i64> {
    Ok(parse_reply::<Pid>(reply, "guest-exec")?.pid)
}

/// A guest process as `guest-exec-status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStatus {
    /// Whether it has ended; the rest is filled in only then.
    pub exited: bool,
    /// Its exit status, if it exited normally.
    pub exit_code: Option<i64>,
    /// The signal that ended it, if one did.
    pub signal: Option<i64>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Whether the agent cut its output short (it keeps at most 16 MiB).
    pub truncated: bool,
}

impl ExecStatus {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.exited && self.exit_code == Some(0)
    }

    /// How it ended, in words: `exit status 2`, `killed by signal 9`.
    pub fn outcome(&self) -> String {
        match (self.exit_code, self.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(code), None) => format!("exit status {code}"),
            (None, None) if self.exited => "ended without a status".into(),
            (None, None) => "still running".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    exited: bool,
    exitcode: Option<i64>,
    signal: Option<i64>,
    #[serde(rename = "out-data")]
    out_data: Option<String>,
    #[serde(rename = "err-data")]
    err_data: Option<String>,
    #[serde(rename = "out-truncated", default)]
    out_truncated: bool,
    #[serde(rename = "err-truncated", default)]
    err_truncated: bool,
}

/// The process's state in a `guest-exec-status` reply, its output decoded.
pub fn parse_status_reply(reply: &str) -> anyhow::Result<ExecStatus> {
    let raw: RawStatus = parse_reply(reply, "guest-exec-status")?;
    let decode = |data: Option<String>, which: &str| {
        base64_decode(data.as_deref().unwrap_or(""))
            .with_context(|| format!("decoding the guest process's {which}"))
    };
    Ok(ExecStatus {
        exited: raw.exited,
        exit_code: raw.exitcode,
        signal: raw.signal,
        stdout: decode(raw.out_data, "output")?,
        stderr: decode(raw.err_data, "error output")?,
        truncated: raw.out_truncated || raw.err_truncated,
    })
}

/// Decode standard base64 (RFC 4648, with `=` padding), as the agent sends output.
pub fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    };
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || (!text.is_empty() && !text.len().is_multiple_of(4)) {
        bail!("malformed base64: its length or padding is wrong");
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in body.bytes().enumerate() {
        let Some(v) = value(c) else {
            bail!("malformed base64: byte {i} is {c:#04x}");
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_argv_as_a_list() {
        let req: serde_json::Value = serde_json::from_str(&exec_request(
            "/usr/local/sbin/mkheadnode-link",
            &["--profile".into(), "a b; rm -rf /".into()],
        ))
        .unwrap();
        assert_eq!(req["execute"], "guest-exec");
        assert_eq!(req["arguments"]["path"], "/usr/local/sbin/mkheadnode-link");
        assert_eq!(req["arguments"]["arg"][1], "a b; rm -rf /");
        assert_eq!(req["arguments"]["capture-output"], true);
        assert_eq!(
            status_request(42),
            r#"{"arguments":{"pid":42},"execute":"guest-exec-status"}"#
        );
        assert_eq!(ping_request(), r#"{"execute":"guest-ping"}"#);
    }

    #[test]
    fn replies_are_parsed_and_agent_errors_reported() {
        assert_eq!(
            parse_exec_reply(r#"{"return":{"pid":1234}}"#).unwrap(),
            1234
        );
        let err = parse_exec_reply(
            r#"{"error":{"class":"GenericError","desc":"Failed to execute child process"}}"#,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("Failed to execute child process"),
            "{err:#}"
        );
        assert!(parse_exec_reply("{}").is_err());
        assert!(parse_exec_reply("not json").is_err());
    }

    #[test]
    fn status_decodes_output() {
        let running = parse_status_reply(r#"{"return":{"exited":false}}"#).unwrap();
        assert!(!running.exited && !running.success());
        assert_eq!(running.outcome(), "still running");
        let done = parse_status_reply(
            r#"{"return":{"exited":true,"exitcode":1,"out-data":"b2sgIGE=","err-data":"eA==","out-truncated":true}}"#,
        )
        .unwrap();
        assert_eq!(done.stdout, b"ok  a");
        assert_eq!(done.stderr, b"x");
        assert!(done.truncated && !done.success());
        assert_eq!(done.outcome(), "exit status 1");
        let killed = parse_status_reply(r#"{"return":{"exited":true,"signal":9}}"#).unwrap();
        assert_eq!(killed.outcome(), "killed by signal 9");
    }

    #[test]
    fn success_is_exit_status_zero_once_exited() {
        let ok = parse_status_reply(r#"{"return":{"exited":true,"exitcode":0}}"#).unwrap();
        assert!(ok.success());
        assert_eq!(ok.outcome(), "exit status 0");
        let gone = parse_status_reply(r#"{"return":{"exited":true}}"#).unwrap();
        assert!(!gone.success());
        assert_eq!(gone.outcome(), "ended without a status");
    }

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("AP8/+w==", b"\x00\xff\x3f\xfb"),
        ] {
            assert_eq!(base64_decode(text).unwrap(), bytes, "{text}");
        }
        for bad in ["Zg=", "Z===", "Zm9v!A==", "Zm\n9v"] {
            assert!(base64_decode(bad).is_err(), "{bad:?}");
        }
    }
}

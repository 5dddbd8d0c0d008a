/*!
libvirt URIs: whether one names a hypervisor on this machine, and a name for the one it names
otherwise, under which mkheadnode keeps that host's locks and state records here.
*/

/// Whether a libvirt URI names a hypervisor on this machine, so that its paths are ours: no
/// host, and no transport or the local `unix` one (`qemu:///system`, `qemu+unix:///system`,
/// `test:///default`), as opposed to `qemu+ssh://host/system` or `qemu://host/system`.
pub fn uri_is_local(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return true;
    };
    let local_transport = scheme.split_once('+').is_none_or(|(_, t)| t == "unix");
    local_transport && rest.starts_with('/')
}

/// A name for the other machine `uri` names (its user, host and port), fit to be one path
/// component: `root@hv1`, `root@10.1.2.3_2222`; `None` for this machine.
pub fn host_key(uri: &str) -> Option<String> {
    if uri_is_local(uri) {
        return None;
    }
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let key: String = authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(match key.as_str() {
        "" | "." | ".." => format!("_{key}"),
        _ => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris_are_told_from_other_machines() {
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system",
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
            "test:///default",
        ] {
            assert!(uri_is_local(uri), "{uri}");
        }
        for uri in [
            "qemu+ssh://root@hv1/system",
            "qemu+ssh://hv1:2222/system",
            "qemu+tcp://hv1/system",
            "qemu://hv1/system",
            "qemu+tls://hv1/system",
        ] {
            assert!(!uri_is_local(uri), "{uri}");
        }
    }

    #[test]
    fn each_remote_host_has_a_key_of_its_own() {
        assert_eq!(host_key("qemu:///system"), None);
        assert_eq!(host_key("test:///default"), None);
        assert_eq!(
            host_key("qemu+ssh://root@hv1/system").as_deref(),
            Some("root@hv1")
        );
        assert_eq!(
            host_key("qemu+ssh://root@10.1.2.3:2222/system?keyfile=/k").as_deref(),
            Some("root@10.1.2.3_2222")
        );
        assert_eq!(
            host_key("qemu+tls://hv1.example/system").as_deref(),
            Some("hv1.example")
        );
        // Nothing that climbs out of the directory it names.
        assert_eq!(host_key("qemu+ssh://../system").as_deref(), Some("_.."));
        assert_eq!(
            host_key("qemu+ssh://a%2F..%2Fb/system").as_deref(),
            Some("a_2F.._2Fb")
        );
    }
}

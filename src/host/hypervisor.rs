/*!
The libvirt side: one connection and the handful of calls mkheadnode makes through it.

Every call adds what it was doing to the error, so a libvirt failure reads as
"defining domain headnode-42: <libvirt's message>".
*/

use crate::error::{failure, Kind};
use crate::model::uri::uri_is_local;
use crate::render::domain_xml::{self, Metadata, METADATA_NS};
use anyhow::Context;
use std::io::{Read, Write as _};
use std::path::Path;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::enumutil::Enum;
use virt::error::{clear_error_callback, Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

/// How much a stream sends or receives at a time.
const STREAM_CHUNK: usize = 256 << 10;

/// Send all of `piece` into `stream` (uploading into the volume `name`).
fn send_all(stream: &Stream, piece: &[u8], name: &str) -> anyhow::Result<()> {
    let mut rest = piece;
    while !rest.is_empty() {
        match stream.send(rest) {
            Ok(n) if n > 0 => rest = &rest[n.unsigned_abs().min(rest.len())..],
            Ok(_) => anyhow::bail!("uploading into {name}: the stream took nothing"),
            Err(e) => return Err(e).with_context(|| format!("uploading into {name}")),
        }
    }
    Ok(())
}

/// The libvirt URI used when neither `--connect` nor `LIBVIRT_DEFAULT_URI` says otherwise.
pub const DEFAULT_URI: &str = "qemu:///system";

fn is(err: &VirtError, code: ErrorNumber) -> bool {
    matches!(err.code(), Enum::Known(c) if c == code)
}

/// A libvirt look-up whose "no such object" error (`missing`) means `None`; other errors say
/// what was being looked up.
fn optional<T>(
    found: Result<T, VirtError>,
    missing: ErrorNumber,
    what: impl FnOnce() -> String,
) -> anyhow::Result<Option<T>> {
    match found {
        Ok(x) => Ok(Some(x)),
        Err(e) if is(&e, missing) => Ok(None),
        Err(e) => Err(e).with_context(what),
    }
}

/// Whether `err` says that a domain is gone: one that another process removed between two calls
/// (a listing that meets one has nothing to say about it).
pub fn domain_gone(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<VirtError>())
        .any(|e| is(e, ErrorNumber::NoDomain))
}

/// A connection to libvirt.
pub struct Hypervisor {
    conn: Connect,
    uri: String,
    /// One pool set-up at a time (bulk runs would otherwise race to define and start it).
    pools: std::sync::Mutex<()>,
}

impl Hypervisor {
    /// Connect to `uri`.
    pub fn connect(uri: &str) -> anyhow::Result<Hypervisor> {
        clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| {
            failure(
                Kind::Libvirt,
                format!(
                    "cannot connect to libvirt at {uri}: {}. Is libvirtd running (`libvirtd -d`, \
                     or `systemctl start libvirtd`), and are you root or in group libvirt?",
                    e.message()
                ),
            )
        })?;
        Ok(Hypervisor {
            conn,
            uri: uri.to_string(),
            pools: std::sync::Mutex::new(()),
        })
    }

    /// The libvirt connection itself.
    pub fn connection(&self) -> &Connect {
        &self.conn
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether the hypervisor runs on this machine (so its paths are our paths).
    pub fn is_local(&self) -> bool {
        uri_is_local(&self.uri)
    }

    /// Whether this is the QEMU driver (as opposed to e.g. `test:///default`).
    pub fn is_qemu_driver(&self) -> bool {
        self.conn
            .driver_type()
            .map(|t| t.eq_ignore_ascii_case("qemu"))
            .unwrap_or(false)
    }

    /// Whether libvirt offers `<domain type='kvm'>` for x86_64 guests.
    pub fn offers_kvm(&self) -> bool {
        self.conn
            .domain_capabilities(None, Some("x86_64"), None, Some("kvm"), 0)
            .is_ok()
    }

    /// libvirt's security drivers, from the host capabilities (e.g. `apparmor`, `dac`).
    pub fn security_models(&self) -> anyhow::Result<Vec<String>> {
        let caps = self
            .conn
            .capabilities()
            .context("reading host capabilities")?;
        Ok(caps
            .split("<secmodel>")
            .skip(1)
            .filter_map(|s| s.split("</secmodel>").next())
            .filter_map(|s| s.split("<model>").nth(1)?.split("</model>").next())
            .map(str::to_string)
            .collect())
    }

    /// The group qemu runs as there (libvirt's DAC base label, `+uid:+gid`), for files a
    /// headnode must read and others must not.
    pub fn qemu_gid(&self) -> anyhow::Result<u32> {
        let caps = self
            .conn
            .capabilities()
            .context("reading host capabilities")?;
        caps.split("<baselabel")
            .skip(1)
            .filter_map(|s| s.split('>').nth(1)?.split('<').next())
            .find_map(|label| {
                label
                    .rsplit(':')
                    .next()?
                    .trim_start_matches('+')
                    .parse()
                    .ok()
            })
            .with_context(|| {
                format!(
                    "libvirt at {} reports no DAC base label, so qemu's group is unknown",
                    self.uri
                )
            })
    }

    /// Whether a libvirt network of this name exists and is active.
    pub fn network_active(&self, name: &str) -> anyhow::Result<Option<bool>> {
        let net = optional(
            self.conn.lookup_network_by_name(name),
            ErrorNumber::NoNetwork,
            || format!("looking up network {name}"),
        )?;
        net.map(|n| n.is_active())
            .transpose()
            .context("reading network state")
    }

    /// The named storage pool, defined (as a dir pool at `dir`, mode `mode`, owned by root),
    /// built and started if needed; whether this call defined it. Building a dir pool makes its
    /// directory with that owner and mode. Threads of this process take turns; against another
    /// process doing the same at the same time, whoever loses a step uses the pool the other one
    /// made.
    pub fn ensure_pool(
        &self,
        name: &str,
        dir: &Path,
        mode: u32,
    ) -> anyhow::Result<(StoragePool, bool)> {
        let _one_at_a_time = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pool, defined) = match self.find_pool(name)? {
            Some(p) => (p, false),
            None => match self
                .conn
                .define_storage_pool_xml(&domain_xml::pool(name, dir, mode)?, 0)
            {
                Ok(p) => {
                    p.set_autostart(true)?;
                    (p, true)
                }
                Err(e) => (
                    self.find_pool(name)?.ok_or(e).with_context(|| {
                        format!("defining storage pool {name} at {}", dir.display())
                    })?,
                    false,
                ),
            },
        };
        if pool.is_active()? {
            return Ok((pool, defined));
        }
        let built = pool
            .build(sys::VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
            .or_else(|_| pool.build(0));
        let started = pool.create(0);
        if pool.is_active()? {
            return Ok((pool, defined));
        }
        built.with_context(|| format!("building storage pool {name} at {}", dir.display()))?;
        started.with_context(|| format!("starting storage pool {name}"))?;
        Ok((pool, defined))
    }

    /// The pool named `name` at `dir` if it exists, started; a pool of that name elsewhere is
    /// refused (`what` says what it was to be). `Ok(None)` if there is none.
    pub fn started_pool_at(
        &self,
        name: &str,
        dir: &Path,
        what: &str,
    ) -> anyhow::Result<Option<StoragePool>> {
        let Some(pool) = self.find_pool(name)? else {
            return Ok(None);
        };
        let xml = pool.xml_desc(0).context("reading the pool's XML")?;
        if pool_target(&xml).as_deref() != Some(dir) {
            return Err(failure(
                Kind::Refused,
                format!(
                    "storage pool {name} is not at {} ({what}): leaving it alone; check it \
                     (`virsh pool-dumpxml {name}`)",
                    dir.display()
                ),
            ));
        }
        if !pool.is_active()? {
            pool.create(0)
                .with_context(|| format!("starting storage pool {name}"))?;
        }
        Ok(Some(pool))
    }

    /// The mode of the directory that the pool `name` at `dir` is, as libvirt reads it;
    /// `Ok(None)` if there is no such pool.
    pub fn pool_mode(&self, name: &str, dir: &Path) -> anyhow::Result<Option<u32>> {
        let Some(pool) = self.started_pool_at(name, dir, "a config dir")? else {
            return Ok(None);
        };
        let xml = pool.xml_desc(0).context("reading the pool's XML")?;
        let mode = xml
            .split("<mode>")
            .nth(1)
            .and_then(|m| m.split("</mode>").next())
            .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
            .with_context(|| format!("pool {name} reports no mode"))?;
        Ok(Some(mode))
    }

    /// Remove the pool `name` at `dir` and the directory it is: its volumes (plain files; a
    /// symbolic link among them is unlinked, never followed), the empty directory, and the
    /// pool's definition. A missing pool is not an error; one elsewhere is refused. Returns
    /// whether there was one.
    pub fn delete_pool_at(&self, name: &str, dir: &Path, what: &str) -> anyhow::Result<bool> {
        let Some(pool) = self.started_pool_at(name, dir, what)? else {
            return Ok(false);
        };
        pool.refresh(0).ok();
        for vol in pool
            .list_all_volumes(0)
            .with_context(|| format!("listing the volumes of pool {name}"))?
        {
            let vname = vol.name().unwrap_or_default();
            vol.delete(0)
                .with_context(|| format!("deleting {vname} from {}", dir.display()))?;
        }
        // libvirt removes the directory of a stopped pool only.
        pool.destroy()
            .with_context(|| format!("stopping pool {name}"))?;
        pool.delete(0)
            .with_context(|| format!("removing {} (pool {name})", dir.display()))?;
        pool.undefine()
            .with_context(|| format!("undefining pool {name}"))?;
        Ok(true)
    }

    /// The named pool if it exists.
    pub fn find_pool(&self, name: &str) -> anyhow::Result<Option<StoragePool>> {
        optional(
            self.conn.lookup_storage_pool_by_name(name),
            ErrorNumber::NoStoragePool,
            || format!("looking up storage pool {name}"),
        )
    }

    /// The named volume in `pool`, if it exists.
    pub fn find_volume(
        &self,
        pool: &StoragePool,
        name: &str,
    ) -> anyhow::Result<Option<StorageVol>> {
        optional(
            pool.lookup_storage_vol_by_name(name),
            ErrorNumber::NoStorageVolume,
            || format!("looking up volume {name}"),
        )
    }

    /// Create a volume from its XML.
    pub fn create_volume(
        &self,
        pool: &StoragePool,
        name: &str,
        xml: &str,
    ) -> anyhow::Result<StorageVol> {
        StorageVol::create_xml(pool, xml, 0).with_context(|| format!("creating volume {name}"))
    }

    /// Write `bytes` into `vol` from its start, straight into its file or device.
    ///
    /// On this machine the volume's path is ours to write. libvirt's upload streams were not
    /// fit for that: in parallel bulk creates, a stream sharing the connection with other calls
    /// now and then left both waiting forever, the client for the daemon's replies and the
    /// daemon for the stream's end (even one stream at a time). On another machine there is no
    /// other way than a stream, so it gets a connection of its own (see [`Hypervisor::upload`]).
    pub fn write_volume(&self, vol: &StorageVol, bytes: &[u8]) -> anyhow::Result<()> {
        if !self.is_local() {
            return self.upload(vol, bytes);
        }
        let path = vol.path().context("reading the volume's path")?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {path}"))
    }

    /// Upload `bytes` into `vol` through a libvirt stream on a connection of its own (see
    /// [`Hypervisor::upload_from`]).
    pub fn upload(&self, vol: &StorageVol, bytes: &[u8]) -> anyhow::Result<()> {
        self.upload_from(vol, &mut &bytes[..], bytes.len() as u64, &mut |_| {})
    }

    /// Upload `len` bytes read from `from` into `vol` through a libvirt stream on a connection
    /// opened for this one upload and closed after it, so that no other call ever shares a
    /// connection with a stream (the hang [`Hypervisor::write_volume`] describes). The volume
    /// is found again on that connection by its pool and name. `sent` gets the bytes sent so
    /// far after every chunk.
    pub fn upload_from(
        &self,
        vol: &StorageVol,
        from: &mut dyn Read,
        len: u64,
        sent: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        self.upload_at(vol, 0, len, from, &mut |n| {
            sent(n);
            Ok(())
        })
    }

    /// [`Hypervisor::upload_from`] into `vol` from byte `offset` on (an upload that resumes):
    /// an error that `sent` returns aborts the upload, and the volume keeps what the hypervisor
    /// wrote.
    pub fn upload_at(
        &self,
        vol: &StorageVol,
        offset: u64,
        len: u64,
        from: &mut dyn Read,
        sent: &mut dyn FnMut(u64) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (own, vol, name) = self.on_own_connection(vol)?;
        let stream = Stream::new(&own.conn, 0).context("opening a stream")?;
        vol.upload(&stream, offset, len, 0)
            .with_context(|| format!("starting the upload into {name}"))?;
        let mut chunk = vec![0u8; STREAM_CHUNK];
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from(len - done).map_or(STREAM_CHUNK, |n| n.min(STREAM_CHUNK));
            let step = match from.read(&mut chunk[..want]) {
                Ok(0) => Err(anyhow::anyhow!(
                    "the source ended after {done} of {len} bytes"
                )),
                Ok(n) => Ok(n),
                Err(e) => Err(e.into()),
            }
            .map_err(|e| e.context(format!("reading what to upload into {name}")))
            .and_then(|n| send_all(&stream, &chunk[..n], &name).map(|()| n))
            .and_then(|n| {
                done += n as u64;
                sent(done)
            });
            if let Err(e) = step {
                let _ = stream.abort();
                return Err(e);
            }
        }
        stream
            .finish()
            .with_context(|| format!("finishing the upload into {name}"))
    }

    /// The whole of `vol` (a small file: a marker or a manifest), read through a libvirt stream
    /// on a connection of its own; an error if it holds more than `limit` bytes.
    pub fn download(&self, vol: &StorageVol, limit: u64) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.download_to(vol, 0, &mut |piece| {
            if (out.len() + piece.len()) as u64 > limit {
                anyhow::bail!("it is larger than {limit} bytes: not read");
            }
            out.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(out)
    }

    /// Read `len` bytes of `vol` from its start (all of it for 0) through a libvirt stream on
    /// a connection of its own, handing each chunk to `sink`; an error it returns aborts the
    /// read.
    pub fn download_to(
        &self,
        vol: &StorageVol,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (own, vol, name) = self.on_own_connection(vol)?;
        let stream = Stream::new(&own.conn, 0).context("opening a stream")?;
        vol.download(&stream, 0, len, 0)
            .with_context(|| format!("starting the download of {name}"))?;
        let mut chunk = vec![0u8; STREAM_CHUNK];
        loop {
            let step = match stream.recv(&mut chunk) {
                Ok(0) => break,
                Ok(n) if n > 0 => sink(&chunk[..n.unsigned_abs().min(chunk.len())])
                    .with_context(|| format!("reading {name}")),
                Ok(_) => Err(anyhow::anyhow!("reading {name}: the stream gave nothing")),
                Err(e) => Err(e).with_context(|| format!("reading {name}")),
            };
            if let Err(e) = step {
                let _ = stream.abort();
                return Err(e);
            }
        }
        stream
            .finish()
            .with_context(|| format!("finishing the download of {name}"))
    }

    /// A connection of its own for a stream, with `vol` found again on it by its pool and
    /// name.
    fn on_own_connection(
        &self,
        vol: &StorageVol,
    ) -> anyhow::Result<(Hypervisor, StorageVol, String)> {
        let name = vol.name().context("reading the volume's name")?;
        let pool_name = vol
            .lookup_storage_pool()
            .and_then(|p| p.name())
            .with_context(|| format!("finding the pool of volume {name}"))?;
        let own = Hypervisor::connect(&self.uri)?;
        let pool = own
            .find_pool(&pool_name)?
            .with_context(|| format!("storage pool {pool_name} went away"))?;
        let vol = own
            .find_volume(&pool, &name)?
            .with_context(|| format!("volume {name} went away"))?;
        Ok((own, vol, name))
    }

    /// Start a transient `dir` pool `name` at `dir`, making the directory (and the ones above
    /// it) with `mode` if it is not there. It goes when stopped (or when libvirtd restarts).
    pub fn start_transient_pool(
        &self,
        name: &str,
        dir: &Path,
        mode: u32,
    ) -> anyhow::Result<StoragePool> {
        self.conn
            .create_storage_pool_xml(
                &domain_xml::pool(name, dir, mode)?,
                sys::VIR_STORAGE_POOL_CREATE_WITH_BUILD,
            )
            .with_context(|| format!("starting a storage pool at {}", dir.display()))
    }

    /// The names of every pool, active or not.
    pub fn pool_names(&self) -> anyhow::Result<Vec<String>> {
        let pools = self
            .conn
            .list_all_storage_pools(0)
            .context("listing storage pools")?;
        Ok(pools.iter().filter_map(|p| p.name().ok()).collect())
    }

    /// The names of the active pools whose directory is `dir`.
    pub fn active_pools_at(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let pools = self
            .conn
            .list_all_storage_pools(sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            .context("listing storage pools")?;
        Ok(pools
            .iter()
            .filter(|p| {
                p.xml_desc(0)
                    .ok()
                    .and_then(|x| pool_target(&x))
                    .is_some_and(|t| t == dir)
            })
            .filter_map(|p| p.name().ok())
            .collect())
    }

    /// Delete the named volume from the named pool only if its path is `path`; a missing pool or
    /// volume is not an error, a volume elsewhere is refused. Returns whether one was deleted.
    pub fn delete_volume_at(&self, pool: &str, name: &str, path: &Path) -> anyhow::Result<bool> {
        let Some(found) = self.find_pool(pool)? else {
            return Ok(false);
        };
        found.refresh(0).ok();
        let Some(vol) = self.find_volume(&found, name)? else {
            return Ok(false);
        };
        let actual = vol.path().context("reading the volume's path")?;
        if Path::new(&actual) != path {
            return Err(failure(
                Kind::Refused,
                format!(
                    "volume {name} in pool {pool} is {actual}, not {} as planned: leaving it \
                     alone; check it, and remove it with `virsh vol-delete {name} --pool {pool}` \
                     if it should go",
                    path.display()
                ),
            ));
        }
        vol.delete(0)
            .with_context(|| format!("deleting volume {name}"))?;
        Ok(true)
    }

    /// The named domain, if it exists.
    pub fn find_domain(&self, name: &str) -> anyhow::Result<Option<Domain>> {
        optional(
            self.conn.lookup_domain_by_name(name),
            ErrorNumber::NoDomain,
            || format!("looking up domain {name}"),
        )
    }

    /// Our metadata on `dom`, or `None` if the domain is not one of ours.
    pub fn metadata(&self, dom: &Domain) -> anyhow::Result<Option<Metadata>> {
        let xml = dom.metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some(METADATA_NS),
            0,
        );
        optional(xml, ErrorNumber::NoDomainMetadata, || {
            "reading domain metadata".into()
        })?
        .map(|xml| domain_xml::parse_metadata(&xml))
        .transpose()
    }

    /// Every domain that carries our metadata, sorted by VLAN (one removed meanwhile by
    /// another process is left out).
    pub fn headnodes(&self) -> anyhow::Result<Vec<(Domain, Metadata)>> {
        let mut out = Vec::new();
        for dom in self.conn.list_all_domains(0).context("listing domains")? {
            let meta = match self.metadata(&dom) {
                Err(e) if domain_gone(&e) => continue,
                other => {
                    other.with_context(|| format!("domain {}", dom.name().unwrap_or_default()))?
                }
            };
            if let Some(meta) = meta {
                out.push((dom, meta));
            }
        }
        out.sort_by_key(|(_, m)| m.vlan);
        Ok(out)
    }

    /// Define a persistent domain from XML.
    pub fn define(&self, name: &str, xml: &str) -> anyhow::Result<Domain> {
        self.conn
            .define_domain_xml(xml)
            .with_context(|| format!("defining domain {name}"))
    }

    /// Stop `dom` if it runs, then undefine it with everything libvirt keeps beside it.
    pub fn destroy_and_undefine(&self, dom: &Domain) -> anyhow::Result<()> {
        let name = dom.name().unwrap_or_default();
        if dom.is_active()? {
            dom.destroy()
                .with_context(|| format!("stopping domain {name}"))?;
        }
        let mut flags =
            sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if self.is_qemu_driver() {
            // Other drivers (the test driver among them) reject these.
            flags |= sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
        }
        dom.undefine_flags(flags)
            .with_context(|| format!("undefining domain {name}"))
    }

    /// Start a transient domain from XML; it disappears when destroyed.
    pub fn start_transient(&self, name: &str, xml: &str) -> anyhow::Result<Domain> {
        self.conn
            .create_domain_xml(xml, 0)
            .with_context(|| format!("starting transient domain {name}"))
    }

    /// The live (or inactive) XML of `dom`.
    pub fn xml(&self, dom: &Domain) -> anyhow::Result<String> {
        dom.xml_desc(0).context("reading domain XML")
    }

    /// Size in bytes and format of the base image at `path` on the hypervisor, through libvirt:
    /// as a volume of any pool, else of a pool made for its directory (`mkheadnode-base-<n>`,
    /// started but never built: the directory is only read). `Ok(None)` if it is not there.
    pub fn base_volume(&self, path: &Path) -> anyhow::Result<Option<(u64, String)>> {
        if let Some(found) = self.volume_by_path(path) {
            return Ok(Some(found));
        }
        let Some(dir) = path.parent() else {
            return Ok(None);
        };
        let name = base_pool_name(dir);
        let pool = match self.started_pool_at(&name, dir, "a base image dir")? {
            Some(p) => p,
            None => {
                let xml = domain_xml::pool(&name, dir, 0o755)?;
                let pool = match self.conn.define_storage_pool_xml(&xml, 0) {
                    Ok(p) => p,
                    Err(_) => match self.find_pool(&name)? {
                        Some(p) => p,
                        None => return Ok(None),
                    },
                };
                if !pool.is_active()? && pool.create(0).is_err() && !pool.is_active()? {
                    // No such directory there: nothing to find, and nothing to keep.
                    pool.undefine().ok();
                    return Ok(None);
                }
                pool
            }
        };
        pool.refresh(0).ok();
        Ok(self.volume_by_path(path))
    }

    /// Size in bytes and format (`qcow2` or `raw`) of a base image that libvirt knows as a
    /// volume, for hypervisors whose files we cannot read ourselves.
    pub fn volume_by_path(&self, path: &Path) -> Option<(u64, String)> {
        let vol = self.conn.lookup_storage_vol_by_path(path.to_str()?).ok()?;
        let cap = vol.info().ok()?.capacity;
        let xml = vol.xml_desc(0).ok()?;
        let format = if xml.contains("type='qcow2'") || xml.contains("type=\"qcow2\"") {
            "qcow2"
        } else {
            "raw"
        };
        Some((cap, format.to_string()))
    }
}

/// The name of the pool made for a base image directory: one per directory, named by a hash of
/// its path.
fn base_pool_name(dir: &Path) -> String {
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("mkheadnode-base-{:08x}", hash >> 32)
}

/// The `<target><path>` of a pool's XML.
fn pool_target(xml: &str) -> Option<std::path::PathBuf> {
    let after = xml.split("<target>").nth(1)?;
    let path = after.split("<path>").nth(1)?.split("</path>").next()?;
    Some(std::path::PathBuf::from(path.trim()))
}

/// A domain's state as a short word (`running`, `shut off`, ...).
pub fn state_word(dom: &Domain) -> String {
    use virt::domain::DomainState as S;
    match dom.state().map(|(s, _)| s) {
        Ok(Enum::Known(S::Running)) => "running",
        Ok(Enum::Known(S::Blocked)) => "blocked",
        Ok(Enum::Known(S::Paused)) => "paused",
        Ok(Enum::Known(S::Shutdown)) => "shutting down",
        Ok(Enum::Known(S::Shutoff)) => "shut off",
        Ok(Enum::Known(S::Crashed)) => "crashed",
        Ok(Enum::Known(S::PMSuspended)) => "suspended",
        _ => "unknown",
    }
    .to_string()
}

//! The cluster id of a data dir: `<data-dir>/meta.properties` (Kafka's file
//! and keys: `node.id`, `cluster.id`), written once the node learns the id
//! from the metadata, and the start-up check that a data dir of one cluster
//! never joins another.
//!
//! Runs on the controller thread (small blocking file I/O, not on a shard).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::network::Sender;
use super::rpc::{Call, Connection, Reply};
use super::{ControllerConfig, MetadataReceiver};
use crate::metadata::{ControllerError, NodeId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIds {
    pub node_id: NodeId,
    pub cluster_id: String,
}

/// Reads `meta.properties`; None when the file does not exist yet.
pub fn read(path: &Path) -> Result<Option<StoredIds>, ControllerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ControllerError::Unavailable(format!("cannot read {}: {e}", path.display()))),
    };
    let mut node_id = None;
    let mut cluster_id = None;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.split_once('=') {
            Some(("node.id", v)) => node_id = v.trim().parse::<NodeId>().ok(),
            Some(("cluster.id", v)) => cluster_id = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (node_id, cluster_id) {
        (Some(node_id), Some(cluster_id)) if !cluster_id.is_empty() => Ok(Some(StoredIds { node_id, cluster_id })),
        _ => Err(ControllerError::InvalidConfig(format!(
            "{} is damaged: it needs node.id and cluster.id lines",
            path.display()
        ))),
    }
}

/// Writes `meta.properties` durably (tmp + fsync + rename + dir fsync).
pub fn write(path: &Path, ids: &StoredIds) -> std::io::Result<()> {
    let text = format!(
        "# Written by fjord when this data dir joined its cluster. Do not edit.\nversion=1\nnode.id={}\ncluster.id={}\n",
        ids.node_id, ids.cluster_id
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("properties.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `meta.properties` whenever the published cluster id differs from
/// the file's (in practice: once, when the cluster first forms).
pub async fn keep_written(mut rx: MetadataReceiver, path: std::path::PathBuf, node_id: NodeId) {
    let mut written: Option<String> = read(&path).ok().flatten().map(|s| s.cluster_id);
    loop {
        let cluster_id = rx.borrow_and_update().cluster_id.clone();
        if !cluster_id.is_empty() && written.as_deref() != Some(cluster_id.as_str()) {
            let ids = StoredIds { node_id, cluster_id: cluster_id.clone() };
            match write(&path, &ids) {
                Ok(()) => {
                    tracing::info!(cluster_id = %cluster_id, path = %path.display(), "data dir joined cluster");
                    written = Some(cluster_id);
                }
                Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot write meta.properties"),
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Asks every peer voter for its cluster id for up to `within`; refuses
/// (InvalidConfig naming both ids) when peers that agree on another id make
/// a majority of the voters: then this data dir is the one that does not
/// belong. Peers that cannot be reached prove nothing and are not waited for
/// beyond `within`.
pub async fn check_peers(
    config: &ControllerConfig,
    sender: &Sender,
    own: &str,
    within: Duration,
) -> Result<(), ControllerError> {
    let majority = config.voters.len() / 2 + 1;
    let deadline = Instant::now() + within;
    let mut answers: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut connections: Vec<(NodeId, Connection)> =
        config.peers().into_iter().map(|v| (v.node_id, Connection::new(v.addr))).collect();
    while Instant::now() < deadline && answers.len() < connections.len() {
        for (peer, connection) in connections.iter_mut() {
            if answers.contains_key(peer) {
                continue;
            }
            let timeout = Duration::from_millis(300).min(deadline.saturating_duration_since(Instant::now()));
            match connection.call(&sender.envelope(Call::Hello), timeout).await {
                Ok(Reply::Hello { cluster_id, .. }) | Ok(Reply::ClusterIdMismatch { ours: cluster_id }) => {
                    answers.insert(*peer, cluster_id);
                }
                _ => {}
            }
        }
        let mut others: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for (peer, id) in &answers {
            if !id.is_empty() && id != own {
                others.entry(id.as_str()).or_default().push(*peer);
            }
        }
        if let Some((other, peers)) = others.into_iter().find(|(_, peers)| peers.len() >= majority) {
            return Err(ControllerError::InvalidConfig(format!(
                "this data dir belongs to cluster {own}, but the controller quorum (nodes {peers:?}) is cluster {other}: \
                 refusing to start; point --data-dir at this cluster's data or at an empty dir"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

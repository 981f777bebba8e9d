//! Tests of the whole controller (thread, Raft, storage) on temp dirs,
//! driven from a plain tokio runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;

use super::test_dir::TestDir;
use super::*;
use crate::metadata::{BrokerMeta, ControllerError, CreateTopicRequest, ReplicaPlacement};

fn config(dir: &TestDir, shard_count: usize) -> ControllerConfig {
    ControllerConfig {
        dir: dir.path().join("controller"),
        meta_properties: dir.path().join("meta.properties"),
        node_id: 1,
        broker: Some(BrokerMeta {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            shard_count,
            listeners: Vec::new(),
            incarnation: uuid::Uuid::nil(),
            fenced: false,
        }),
        voters: Vec::new(),
        controller_addr: None,
        heartbeat_interval: Duration::from_millis(200),
        session_timeout: Duration::from_millis(1000),
        leader_rebalance_interval: None,
        shutdown: never_shutdown(),
    }
}

/// The topics with every leader epoch zeroed: a restart of the (only) broker
/// starts new leader epochs, everything else must survive as it was.
fn without_epochs(meta: &ClusterMetadata) -> BTreeMap<String, TopicMeta> {
    let mut topics = meta.topics.clone();
    for t in topics.values_mut() {
        for p in &mut t.partitions {
            p.leader_epoch = 0;
            p.partition_epoch = 0;
        }
    }
    topics
}

/// A shutdown that never fires (its trigger is kept alive for the process).
fn never_shutdown() -> shards::Shutdown {
    let (trigger, shutdown) = shards::Shutdown::new();
    std::mem::forget(trigger);
    shutdown
}

fn topic(name: &str, partitions: i32) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: BTreeMap::new(),
        internal: false,
            assignments: Vec::new(),
    }
}

fn per_shard(meta: &ClusterMetadata) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for t in meta.topics.values() {
        for p in &t.partitions {
            *counts.entry(p.leader.shard).or_insert(0) += 1;
        }
    }
    counts
}

/// A fresh dir bootstraps a cluster of one: this broker registered, this
/// node the controller, a 22-char cluster id, all visible before start returns.
#[tokio::test]
async fn fresh_start_bootstraps() {
    let dir = TestDir::new("ctl-fresh");
    let c = start(config(&dir, 2)).expect("start");
    let m = c.current();
    assert_eq!(m.cluster_id.len(), 22);
    assert_eq!(m.controller_id, 1);
    assert_eq!(m.brokers.get(&1).map(|b| b.shard_count), Some(2));
    assert!(
        m.version >= 3,
        "leader, broker and cluster id each bump the version"
    );
    c.shutdown();
    c.shutdown();
}

/// Create, alter configs, grow, and delete a topic; each answer is already
/// visible to a subscriber, and the version grows with every change.
#[tokio::test]
async fn topic_lifecycle() {
    let dir = TestDir::new("ctl-life");
    let c = start(config(&dir, 2)).expect("start");
    let rx = c.subscribe();
    let v0 = rx.borrow().version;

    let created = c.create_topics(vec![topic("orders", 3)], false).await;
    let t = created[0].as_ref().expect("created").clone();
    assert!(!t.id.is_nil());
    assert_eq!(t.partitions.len(), 3);
    let seen = rx.borrow().clone();
    assert_eq!(seen.topic("orders"), Some(&t));
    assert_eq!(seen.version, v0 + 1);

    let changes = BTreeMap::from([("retention.ms".to_string(), Some("1000".to_string()))]);
    c.alter_topic_configs("orders".into(), changes, false)
        .await
        .expect("alter");
    assert_eq!(
        rx.borrow()
            .topic("orders")
            .and_then(|t| t.configs.get("retention.ms").cloned()),
        Some("1000".to_string())
    );
    let removal = BTreeMap::from([("retention.ms".to_string(), None)]);
    c.alter_topic_configs("orders".into(), removal, false)
        .await
        .expect("remove");
    assert!(rx
        .borrow()
        .topic("orders")
        .is_some_and(|t| t.configs.is_empty()));

    c.create_partitions("orders".into(), 5, false)
        .await
        .expect("grow");
    let grown = rx.borrow().topic("orders").cloned().expect("topic");
    assert_eq!(grown.partitions.len(), 5);
    assert_eq!(grown.partitions[..3], t.partitions[..]);
    assert!(grown
        .partitions
        .iter()
        .enumerate()
        .all(|(i, p)| p.partition == i as i32));

    let deleted = c.delete_topics(vec!["orders".into()]).await;
    assert_eq!(deleted, vec![Ok(t.id)]);
    assert!(rx.borrow().topic("orders").is_none());
    assert_eq!(rx.borrow().version, v0 + 5);
    c.shutdown();
}

/// Invalid requests get the right typed error and change nothing; valid
/// entries in the same request still succeed; validate_only commits nothing.
#[tokio::test]
async fn validation_errors() {
    let dir = TestDir::new("ctl-valid");
    let c = start(config(&dir, 1)).expect("start");
    let v0 = c.current().version;
    let mut bad_config = topic("badcfg", 1);
    bad_config
        .configs
        .insert("cleanup.policy".into(), "shred".into());
    let mut unknown_config = topic("unkcfg", 1);
    unknown_config.configs.insert("no.such".into(), "1".into());
    let mut rf2 = topic("rf2", 1);
    rf2.replication_factor = 2;
    let mut rf0 = topic("rf0", 1);
    rf0.replication_factor = 0;
    let results = c
        .create_topics(
            vec![
                topic("bad name", 1),
                topic("zero", 0),
                rf2,
                rf0,
                bad_config,
                unknown_config,
                topic("dup", 1),
                topic("dup", 2),
                topic("good", 1),
            ],
            false,
        )
        .await;
    assert!(matches!(results[0], Err(ControllerError::InvalidTopic(_))));
    assert!(matches!(
        results[1],
        Err(ControllerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        results[2],
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(
        results[3],
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(&results[4], Err(ControllerError::InvalidConfig(m)) if m.contains("shred")));
    assert_eq!(
        results[5],
        Err(ControllerError::InvalidConfig(
            "Unknown topic config name: no.such".into()
        ))
    );
    assert!(matches!(results[6], Err(ControllerError::InvalidConfig(_))));
    assert!(matches!(results[7], Err(ControllerError::InvalidConfig(_))));
    assert!(results[8].is_ok());
    assert_eq!(c.current().version, v0 + 1, "only 'good' was committed");
    assert_eq!(c.current().topics.len(), 1);

    let again = c.create_topics(vec![topic("good", 1)], false).await;
    assert!(matches!(
        again[0],
        Err(ControllerError::TopicAlreadyExists(_))
    ));

    let dry = c.create_topics(vec![topic("dry", 4)], true).await;
    assert_eq!(dry[0].as_ref().map(|t| t.partitions.len()), Ok(4));
    assert!(c.current().topic("dry").is_none());

    assert!(matches!(
        c.create_partitions("good".into(), 1, false).await,
        Err(ControllerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        c.create_partitions("nope".into(), 3, false).await,
        Err(ControllerError::UnknownTopic(_))
    ));
    c.create_partitions("good".into(), 3, true)
        .await
        .expect("validate only");
    assert_eq!(
        c.current().topic("good").map(|t| t.partitions.len()),
        Some(1)
    );

    let bad = BTreeMap::from([("retention.ms".to_string(), Some("soon".to_string()))]);
    assert!(matches!(
        c.alter_topic_configs("good".into(), bad, false).await,
        Err(ControllerError::InvalidConfig(_))
    ));
    let unknown = BTreeMap::from([("x".to_string(), None)]);
    assert!(matches!(
        c.alter_topic_configs("good".into(), unknown, false).await,
        Err(ControllerError::InvalidConfig(_))
    ));
    assert_eq!(
        c.delete_topics(vec!["nope".into()])
            .await
            .first()
            .map(|r| r.is_err()),
        Some(true)
    );
    assert!(matches!(
        c.delete_topics(vec!["nope".into()]).await[0],
        Err(ControllerError::UnknownTopic(_))
    ));
    c.shutdown();
}

/// 12 partitions over 2 shards go 6/6, and placement keeps balancing across
/// topics (a second topic fills the emptier shard first).
#[tokio::test]
async fn placement_spreads_over_shards() {
    let dir = TestDir::new("ctl-place");
    let c = start(config(&dir, 2)).expect("start");
    c.create_topics(vec![topic("a", 12)], false).await[0]
        .as_ref()
        .expect("a");
    assert_eq!(per_shard(&c.current()), BTreeMap::from([(0, 6), (1, 6)]));

    c.create_topics(vec![topic("b", 1)], false).await[0]
        .as_ref()
        .expect("b");
    let c_topic = c.create_topics(vec![topic("c", 3)], false).await;
    let c_topic = c_topic[0].as_ref().expect("c");
    assert_eq!(per_shard(&c.current()), BTreeMap::from([(0, 8), (1, 8)]));
    assert_eq!(
        c_topic.partitions[0].leader,
        ReplicaPlacement {
            node_id: 1,
            shard: 1
        }
    );
    for p in &c_topic.partitions {
        assert_eq!(p.replicas, vec![p.leader]);
        assert_eq!(p.isr, vec![1]);
        assert_eq!(p.leader_epoch, 0);
    }
    c.shutdown();
}

/// A restart on the same dir keeps the cluster id, topics, ids, placement and
/// configs, whether the state comes from the log alone or a snapshot plus
/// the log after it; the version does not go backwards.
#[tokio::test]
async fn restart_keeps_everything() {
    let dir = TestDir::new("ctl-restart");
    let c = start(config(&dir, 2)).expect("start");
    let mut cfg = topic("t1", 4);
    cfg.configs
        .insert("cleanup.policy".into(), "compact".into());
    c.create_topics(vec![cfg, topic("t2", 3)], false).await;
    let before = c.current();
    c.shutdown();

    let c = start(config(&dir, 2)).expect("restart from log");
    let after = c.current();
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_eq!(without_epochs(&after), without_epochs(&before));
    assert!(
        after.topics["t1"].partitions.iter().all(|p| p.leader_epoch > 0),
        "a restarted leader starts a new leader epoch"
    );
    assert!(after.version >= before.version);

    c.snapshot().await.expect("snapshot");
    assert!(dir.path().join("controller/snapshot.json").exists());
    c.delete_topics(vec!["t2".into()]).await[0]
        .as_ref()
        .expect("delete");
    c.create_topics(vec![topic("t3", 2)], false).await[0]
        .as_ref()
        .expect("t3");
    let before = c.current();
    c.shutdown();

    let c = start(config(&dir, 2)).expect("restart from snapshot + log");
    let after = c.current();
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_eq!(without_epochs(&after), without_epochs(&before));
    assert!(after.topic("t2").is_none());
    assert!(after.version >= before.version);
    c.shutdown();
}

/// A torn write at the end of the controller log (kill -9 mid-append) does
/// not stop the controller from starting; committed topics survive.
#[tokio::test]
async fn torn_log_tail_is_tolerated() {
    let dir = TestDir::new("ctl-torn");
    let c = start(config(&dir, 1)).expect("start");
    c.create_topics(vec![topic("kept", 2)], false).await[0]
        .as_ref()
        .expect("kept");
    let before = c.current();
    c.shutdown();
    let log_dir = dir.path().join("controller/log");
    let mut segs: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    segs.sort();
    let last = segs.pop().expect("segment");
    let mut f = OpenOptions::new().append(true).open(&last).expect("open");
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .expect("write garbage");
    drop(f);
    let c = start(config(&dir, 1)).expect("start after torn write");
    assert_eq!(without_epochs(&c.current()), without_epochs(&before));
    c.shutdown();
}

/// After shutdown the handle answers Unavailable instead of hanging.
#[tokio::test]
async fn calls_after_shutdown_fail() {
    let dir = TestDir::new("ctl-down");
    let c = start(config(&dir, 1)).expect("start");
    c.shutdown();
    assert!(matches!(
        c.create_topics(vec![topic("x", 1)], false).await[0],
        Err(ControllerError::Unavailable(_))
    ));
}

/// The handle can be shared with shard threads; a second controller on the
/// same dir is refused while the first runs, and allowed after it stops.
#[tokio::test]
async fn handle_is_shareable_and_dir_is_exclusive() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<ControllerHandle>();
    assert_send_sync_clone::<MetadataReceiver>();
    let dir = TestDir::new("ctl-lock");
    let c = start(config(&dir, 1)).expect("start");
    match start(config(&dir, 1)) {
        Err(ControllerError::Unavailable(m)) => assert!(m.contains("in use"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two controllers on one dir"),
    }
    c.shutdown();
    start(config(&dir, 1))
        .expect("start after shutdown")
        .shutdown();
}

/// The handle works from a glommio task (no tokio runtime, no tokio timers
/// on that thread): a create answers, and a subscriber there sees the new
/// version through `changed()`.
#[test]
fn works_from_a_glommio_thread() {
    let dir = TestDir::new("ctl-glommio");
    let c = start(config(&dir, 1)).expect("start");
    let shard_handle = c.clone();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(256 * 1024)
        .name("test-shard")
        .spawn(move || async move {
            let mut rx = shard_handle.subscribe();
            let v0 = rx.borrow_and_update().version;
            let r = shard_handle
                .create_topics(vec![topic("from-shard", 2)], false)
                .await;
            assert!(r[0].is_ok(), "{r:?}");
            rx.changed().await.expect("publisher alive");
            let seen = rx.borrow_and_update().clone();
            assert!(seen.version > v0);
            assert!(seen.topic("from-shard").is_some());
        })
        .expect("spawn glommio executor");
    ex.join().expect("glommio executor");
    assert!(c.current().topic("from-shard").is_some());
    c.shutdown();
}

/// Starting on a dir bootstrapped by another node id, or with no shards, is
/// a clear configuration error rather than a hang.
#[tokio::test]
async fn wrong_node_id_or_no_shards_is_refused() {
    let dir = TestDir::new("ctl-wrong-node");
    start(config(&dir, 1)).expect("start").shutdown();
    let mut other = config(&dir, 1);
    other.node_id = 2;
    if let Some(b) = other.broker.as_mut() {
        b.node_id = 2;
    }
    match start(other) {
        Err(ControllerError::InvalidConfig(m)) => assert!(m.contains("belongs to"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started as a node that is not a voter"),
    }
    assert!(matches!(
        start(config(&dir, 0)),
        Err(ControllerError::InvalidConfig(_))
    ));
    start(config(&dir, 1))
        .expect("the right node still starts")
        .shutdown();
}

/// Producer id blocks never overlap, also across a restart from the log and
/// from a snapshot; bad block sizes are refused.
#[tokio::test]
async fn producer_id_blocks_are_unique_across_restarts() {
    let dir = TestDir::new("ctl-pids");
    let c = start(config(&dir, 1)).expect("start");
    let a = c.allocate_producer_ids(1000).await.expect("first block");
    let b = c.allocate_producer_ids(10).await.expect("second block");
    assert_eq!(a, 0);
    assert_eq!(b, 1000);
    assert!(c.allocate_producer_ids(0).await.is_err());
    assert!(c.allocate_producer_ids(-5).await.is_err());
    assert_eq!(c.current().next_producer_id, 1010);
    c.shutdown();

    let c = start(config(&dir, 1)).expect("restart from log");
    assert_eq!(c.allocate_producer_ids(1000).await.expect("after restart"), 1010);
    c.snapshot().await.expect("snapshot");
    c.shutdown();

    let c = start(config(&dir, 1)).expect("restart from snapshot");
    assert_eq!(c.allocate_producer_ids(1).await.expect("after snapshot"), 2010);
    c.shutdown();
}

/// A controller config for node `id` of a three-voter quorum on 127.0.0.1 ports.
fn voter_config(dir: &TestDir, id: NodeId, ports: &[u16; 3]) -> ControllerConfig {
    let mut c = config(dir, 2);
    c.dir = dir.path().join(format!("n{id}")).join("controller");
    c.meta_properties = dir.path().join(format!("n{id}")).join("meta.properties");
    c.node_id = id;
    if let Some(b) = c.broker.as_mut() {
        b.node_id = id;
        b.port = 9092 + id;
    }
    c.voters = (1..=3).map(|n| Voter { node_id: n, addr: format!("127.0.0.1:{}", ports[(n - 1) as usize]) }).collect();
    c.controller_addr = Some(format!("127.0.0.1:{}", ports[(id - 1) as usize]).parse().expect("addr"));
    c
}

fn free_ports() -> [u16; 3] {
    let l: Vec<std::net::TcpListener> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    let p: Vec<u16> = l.iter().map(|l| l.local_addr().expect("addr").port()).collect();
    [p[0], p[1], p[2]]
}

/// Three voters started at once form one cluster: every node registers, all
/// agree on the cluster id and the controller; a topic created through a
/// node that is not the controller (forwarded) is seen by all; after the
/// controller stops, the other two elect another and writes go on; the
/// stopped node's broker is fenced, and on restart it catches up from a
/// snapshot (the survivors purged their logs) and is unfenced again.
#[test]
fn three_voters_form_a_cluster_and_survive_losing_the_controller() {
    let dir = TestDir::new("ctl-three");
    let ports = free_ports();
    let starts: Vec<_> = (1..=3)
        .map(|id| {
            let c = voter_config(&dir, id, &ports);
            std::thread::spawn(move || start(c).expect("start"))
        })
        .collect();
    let nodes: Vec<ControllerHandle> = starts.into_iter().map(|t| t.join().expect("thread")).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let wait_for = |node: &ControllerHandle, what: &str, ok: &dyn Fn(&ClusterMetadata) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !ok(&node.current()) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {:?}", node.current());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for n in &nodes {
        wait_for(n, "three live brokers", &|m| m.live_brokers().count() == 3 && !m.cluster_id.is_empty());
    }
    let ids: BTreeSet<String> = nodes.iter().map(|n| n.current().cluster_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one cluster id: {ids:?}");
    let controller = nodes[0].current().controller_id;
    assert!((1..=3).contains(&controller));
    let other = (1..=3).find(|id| *id != controller).expect("a non-controller");
    let via = &nodes[(other - 1) as usize];
    let created = rt.block_on(via.create_topics(vec![CreateTopicRequest { replication_factor: 3, ..topic("spread", 6) }], false));
    let t = created[0].as_ref().expect("created through a non-controller").clone();
    let leaders: BTreeSet<NodeId> = t.partitions.iter().map(|p| p.leader.node_id).collect();
    assert_eq!(leaders.len(), 3, "leaders on every broker: {leaders:?}");
    for p in &t.partitions {
        let brokers: BTreeSet<NodeId> = p.replicas.iter().map(|r| r.node_id).collect();
        assert_eq!(brokers.len(), 3, "RF 3 on distinct brokers");
        assert_eq!(p.isr.len(), 3, "every replica starts in the ISR");
    }
    for n in &nodes {
        wait_for(n, "the topic everywhere", &|m| m.topic("spread").is_some());
    }
    // Stop the active controller; the other two elect a new one and accept writes.
    let stopped = &nodes[(controller - 1) as usize];
    stopped.shutdown();
    let survivor = &nodes[(other - 1) as usize];
    wait_for(survivor, "a new controller", &|m| m.controller_id != controller);
    let again = rt.block_on(survivor.create_topics(vec![topic("after", 1)], false));
    assert!(again[0].is_ok(), "{again:?}");
    wait_for(survivor, "the stopped broker fenced", &|m| m.brokers.get(&controller).is_some_and(|b| b.fenced));
    // Purge the log behind a snapshot on both survivors: the stopped node can
    // then only catch up by InstallSnapshot.
    for (i, n) in nodes.iter().enumerate() {
        if i as NodeId + 1 != controller {
            rt.block_on(n.snapshot()).expect("snapshot and purge");
        }
    }
    let back = start(voter_config(&dir, controller, &ports)).expect("restart");
    wait_for(&back, "caught up", &|m| m.topic("after").is_some() && m.live_broker(controller).is_some());
    back.shutdown();
    for (i, n) in nodes.iter().enumerate() {
        if i as NodeId + 1 != controller {
            n.shutdown();
        }
    }
}

/// Kafka's voter list format parses; bad entries are refused.
#[test]
fn voter_lists() {
    use crate::config::Config;
    let flags = |v: &str| vec![("controller.quorum.voters".to_string(), v.to_string()), ("controller_addr".to_string(), "127.0.0.1:1".to_string()), ("node_id".to_string(), "1".to_string())];
    let c = Config::resolve(&flags("1@a:9093, 2@127.0.0.3:9093"), &[]).expect("valid");
    assert_eq!(c.controller_quorum_voters, vec![Voter { node_id: 1, addr: "a:9093".into() }, Voter { node_id: 2, addr: "127.0.0.3:9093".into() }]);
    for bad in ["", "x@a:1", "1@a", "1@a:0", "1@a:1,1@b:2", "1a:9"] {
        assert!(Config::resolve(&flags(bad), &[]).is_err(), "{bad:?} accepted");
    }
    // This node must be a voter when it is a controller.
    assert!(Config::resolve(&flags("2@a:1,3@b:1"), &[]).is_err());
}

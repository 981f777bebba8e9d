//! `fjord cluster info|health|unregister` and `fjord offsets TOPIC`.

use std::collections::BTreeSet;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::Result;
use crate::ops::{self, OffsetSpec};
use crate::output::{id_list, key_values, section, Out, Table};
use crate::Outcome;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Cluster id, controller, and brokers with address and rack.
    Info,
    /// Brokers, leaderless and under-replicated partitions; exits 1 when unhealthy.
    Health,
    /// Forget a broker stopped for good (Kafka's UnregisterBroker, as
    /// `kafka-cluster.sh unregister`); a running broker registers again.
    Unregister {
        /// The broker's node id.
        #[arg(long)]
        id: i32,
    },
}

#[derive(Args, Debug)]
pub struct OffsetsArgs {
    /// The topic.
    topic: String,
    /// Also show the first offset at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    timestamp: Option<i64>,
}

pub fn run(cmd: &ClusterCmd, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    match cmd {
        ClusterCmd::Info => info(client, out),
        ClusterCmd::Health => health(client, out),
        ClusterCmd::Unregister { id } => unregister(client, *id, out),
    }
}

fn unregister(client: &mut Client, id: i32, out: &mut Out) -> Result<Outcome> {
    ops::unregister_broker(client, id)?;
    if out.is_json() {
        return out.json(&json!({ "unregistered": id })).map(|_| Outcome::Ok);
    }
    out.text(&format!("Unregistered broker {id}\n"))?;
    Ok(Outcome::Ok)
}

fn info(client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let c = ops::describe_cluster(client)?;
    if out.is_json() {
        let brokers: Vec<Value> = c
            .brokers
            .iter()
            .map(|b| json!({ "id": b.id, "host": b.host, "port": b.port, "rack": b.rack, "controller": b.id == c.controller_id }))
            .collect();
        let doc = json!({ "cluster_id": c.cluster_id, "controller_id": c.controller_id, "brokers": brokers });
        return out.json(&doc).map(|_| Outcome::Ok);
    }
    let summary = key_values(&[
        ("CLUSTER-ID", c.cluster_id.clone().unwrap_or_default()),
        ("CONTROLLER", c.controller_id.to_string()),
    ]);
    let mut t = Table::new(&["ID", "HOST", "PORT", "RACK"]);
    for b in &c.brokers {
        let id = if b.id == c.controller_id { format!("{}*", b.id) } else { b.id.to_string() };
        t.row(vec![id, b.host.clone(), b.port.to_string(), b.rack.clone().unwrap_or_else(|| "-".to_string())]);
    }
    out.text(&section("CLUSTER", &summary))?;
    out.text(&section("BROKERS", &t.render()))?;
    Ok(Outcome::Ok)
}

fn health(client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let md = client.refresh_metadata(None)?.clone();
    let up: Vec<i32> = md.brokers.keys().copied().collect();
    let mut known: BTreeSet<i32> = up.iter().copied().collect();
    let mut leaderless = Vec::new();
    let mut under_replicated = Vec::new();
    for t in md.topics.values() {
        for p in &t.partitions {
            known.extend(p.replicas.iter().copied());
            if p.leader < 0 {
                leaderless.push(format!("{}/{}", t.name, p.index));
            }
            if p.isr.len() < p.replicas.len() {
                under_replicated.push(format!("{}/{}", t.name, p.index));
            }
        }
    }
    // Metadata lists live brokers only: a replica on a broker it does not list is on a down node.
    let down: Vec<i32> = known.iter().copied().filter(|id| !md.brokers.contains_key(id)).collect();
    let healthy = leaderless.is_empty() && under_replicated.is_empty() && down.is_empty() && !up.is_empty();
    if out.is_json() {
        let doc = json!({ "healthy": healthy, "controller_id": md.controller_id, "brokers": up, "brokers_down": down,
                          "leaderless_partitions": leaderless, "under_replicated_partitions": under_replicated });
        out.json(&doc)?;
    } else {
        let text = key_values(&[
            ("HEALTHY", healthy.to_string()),
            ("CONTROLLER", md.controller_id.to_string()),
            ("BROKERS", id_list(&up)),
            ("BROKERS-DOWN", id_list(&down)),
            ("LEADERLESS-PARTITIONS", format!("{} [{}]", leaderless.len(), leaderless.join(", "))),
            ("UNDER-REPLICATED-PARTITIONS", format!("{} [{}]", under_replicated.len(), under_replicated.join(", "))),
        ]);
        out.text(&text)?;
    }
    Ok(if healthy { Outcome::Ok } else { Outcome::Failed })
}

pub fn offsets(a: &OffsetsArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics = [a.topic.clone()];
    client.refresh_metadata(Some(&topics))?.topic(&a.topic)?;
    let earliest = ops::topic_offsets(client, &a.topic, OffsetSpec::Earliest)?;
    let latest = ops::topic_offsets(client, &a.topic, OffsetSpec::Latest)?;
    let at = match a.timestamp {
        Some(ms) => Some(ops::topic_offsets(client, &a.topic, OffsetSpec::Timestamp(ms))?),
        None => None,
    };
    if out.is_json() {
        let docs: Vec<Value> = earliest
            .iter()
            .map(|(p, e)| {
                let mut d = json!({ "partition": p, "earliest": e, "latest": latest.get(p) });
                if let Some(at) = &at {
                    d["at_timestamp"] = json!(at.get(p).copied().filter(|o| *o >= 0));
                }
                d
            })
            .collect();
        return out.json(&json!({ "topic": a.topic, "partitions": docs })).map(|_| Outcome::Ok);
    }
    let mut headers = vec!["PARTITION", "EARLIEST", "LATEST"];
    if at.is_some() {
        headers.push("AT-TIMESTAMP");
    }
    let mut t = Table::new(&headers);
    for (p, e) in &earliest {
        let mut row = vec![p.to_string(), e.to_string(), latest.get(p).map_or("-".to_string(), |o| o.to_string())];
        if let Some(at) = &at {
            row.push(at.get(p).copied().filter(|o| *o >= 0).map_or("-".to_string(), |o| o.to_string()));
        }
        t.row(row);
    }
    out.text(&t.render())?;
    Ok(Outcome::Ok)
}

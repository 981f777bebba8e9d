//! `fjord topic ...`: create, list, describe, delete, alter-config,
//! add-partitions (here) and produce, consume (in `produce.rs`, `consume.rs`).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::ops::{self, NewTopic, OffsetSpec, TopicResults};
use crate::output::{id_list, key_values, section, Out, Table};
use crate::{parse_key_value, Outcome};

use crate::{consume, produce};

#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    /// Create topics.
    Create(CreateArgs),
    /// List topics with their partition and replica counts.
    List(ListArgs),
    /// A topic's summary, configs and partitions (leader, replicas, ISR, offsets).
    Describe(DescribeArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Set or delete (reset to default) topic configs.
    AlterConfig(AlterConfigArgs),
    /// Add partitions to a topic.
    AddPartitions(AddPartitionsArgs),
    /// Produce one record per line of stdin.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Topics to create.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Partitions per topic (-1: the broker's default).
    #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
    partitions: i32,
    /// Replication factor (-1: the broker's default).
    #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
    replicas: i16,
    /// Topic config, repeatable: -c cleanup.policy=compact.
    #[arg(short = 'c', long = "topic-config", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    configs: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Include internal topics.
    #[arg(short, long)]
    internal: bool,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The topic.
    name: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Topics to delete.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"])))]
pub struct AlterConfigArgs {
    /// The topic.
    name: String,
    /// Set a config, repeatable: --set retention.ms=60000.
    #[arg(short, long, value_parser = parse_key_value, value_name = "KEY=VALUE")]
    set: Vec<(String, String)>,
    /// Delete a config (back to the broker default), repeatable.
    #[arg(short, long, value_name = "KEY")]
    delete: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AddPartitionsArgs {
    /// The topic.
    name: String,
    /// How many partitions to ADD (not the new total), as rpk's -n.
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(1..))]
    num: i32,
}

pub fn run(cmd: &TopicCmd, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    match cmd {
        TopicCmd::Create(a) => create(a, client, out),
        TopicCmd::List(a) => list(a, client, out),
        TopicCmd::Describe(a) => describe(a, client, out),
        TopicCmd::Delete(a) => delete(a, client, out),
        TopicCmd::AlterConfig(a) => alter_config(a, client, out),
        TopicCmd::AddPartitions(a) => add_partitions(a, client, out),
        TopicCmd::Produce(a) => produce::run(a, client, out),
        TopicCmd::Consume(a) => consume::run(a, client, out),
    }
}

fn timeout_ms(client: &Client) -> i32 {
    client.config().timeout.as_millis().min(i32::MAX as u128) as i32
}

/// Prints one status line per topic (`OK` or the error), each error also on
/// stderr; Failed if any failed.
fn report(results: TopicResults, out: &mut Out, extra: &[(&str, Value)]) -> Result<Outcome> {
    let mut failed = false;
    let mut table = Table::new(&["TOPIC", "STATUS"]);
    let mut docs = Vec::new();
    for (name, r) in &results {
        let mut doc = json!({ "topic": name, "ok": r.is_ok() });
        for (k, v) in extra {
            doc[*k] = v.clone();
        }
        match r {
            Ok(()) => table.row(vec![name.clone(), "OK".to_string()]),
            Err(e) => {
                failed = true;
                eprintln!("fjord: {e}");
                let code = e.kafka_code().map(crate::error::error_name).unwrap_or_else(|| e.to_string());
                table.row(vec![name.clone(), code.clone()]);
                doc["error"] = Value::String(code);
                doc["message"] = Value::String(e.to_string());
            }
        }
        docs.push(doc);
    }
    if out.is_json() {
        out.json(&Value::Array(docs))?;
    } else {
        out.text(&table.render())?;
    }
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}

fn create(a: &CreateArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics: Vec<NewTopic> = a
        .names
        .iter()
        .map(|n| NewTopic {
            name: n.clone(),
            partitions: a.partitions,
            replicas: a.replicas,
            configs: a.configs.clone(),
        })
        .collect();
    let results = ops::create_topics(client, &topics, timeout_ms(client))?;
    report(results, out, &[])
}

fn list(a: &ListArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let md = client.refresh_metadata(None)?;
    let topics: Vec<_> = md.topics.values().filter(|t| a.internal || !t.internal).collect();
    if out.is_json() {
        let docs: Vec<Value> = topics
            .iter()
            .map(|t| {
                json!({ "name": t.name, "partitions": t.partitions.len(), "replicas": t.replication_factor(),
                        "internal": t.internal, "id": t.id })
            })
            .collect();
        return out.json(&Value::Array(docs)).map(|_| Outcome::Ok);
    }
    let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
    for t in topics {
        table.row(vec![t.name.clone(), t.partitions.len().to_string(), t.replication_factor().to_string()]);
    }
    out.text(&table.render())?;
    Ok(Outcome::Ok)
}

fn describe(a: &DescribeArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics = [a.name.clone()];
    client.refresh_metadata(Some(&topics))?;
    let info = client.metadata().topic(&a.name)?.clone();
    let configs = ops::describe_topic_configs(client, &a.name)?;
    let start = ops::topic_offsets(client, &a.name, OffsetSpec::Earliest)?;
    let end = ops::topic_offsets(client, &a.name, OffsetSpec::Latest)?;
    let offset = |m: &std::collections::BTreeMap<i32, i64>, p: i32| m.get(&p).copied().unwrap_or(-1);
    if out.is_json() {
        let parts: Vec<Value> = info
            .partitions
            .iter()
            .map(|p| {
                json!({ "partition": p.index, "leader": p.leader, "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas, "isr": p.isr, "offline_replicas": p.offline,
                        "log_start_offset": offset(&start, p.index), "high_watermark": offset(&end, p.index) })
            })
            .collect();
        let cfgs: Vec<Value> = configs
            .iter()
            .map(|c| json!({ "name": c.name, "value": c.value, "source": c.source, "read_only": c.read_only, "sensitive": c.sensitive }))
            .collect();
        let doc = json!({ "name": info.name, "id": info.id, "internal": info.internal,
                          "partitions": info.partitions.len(), "replicas": info.replication_factor(),
                          "configs": cfgs, "partition_details": parts });
        return out.json(&doc).map(|_| Outcome::Ok);
    }
    let summary = key_values(&[
        ("NAME", info.name.clone()),
        ("ID", info.id.clone()),
        ("INTERNAL", info.internal.to_string()),
        ("PARTITIONS", info.partitions.len().to_string()),
        ("REPLICAS", info.replication_factor().to_string()),
    ]);
    let mut ct = Table::new(&["KEY", "VALUE", "SOURCE"]);
    for c in &configs {
        let value = if c.sensitive { "(sensitive)".to_string() } else { c.value.clone().unwrap_or_default() };
        ct.row(vec![c.name.clone(), value, c.source.to_string()]);
    }
    let mut pt = Table::new(&["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START-OFFSET", "HIGH-WATERMARK"]);
    for p in &info.partitions {
        pt.row(vec![
            p.index.to_string(),
            p.leader.to_string(),
            p.leader_epoch.to_string(),
            id_list(&p.replicas),
            id_list(&p.isr),
            offset(&start, p.index).to_string(),
            offset(&end, p.index).to_string(),
        ]);
    }
    out.text(&section("SUMMARY", &summary))?;
    out.text(&section("CONFIGS", &ct.render()))?;
    out.text(&section("PARTITIONS", &pt.render()))?;
    Ok(Outcome::Ok)
}

fn delete(a: &DeleteArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let results = ops::delete_topics(client, &a.names, timeout_ms(client))?;
    report(results, out, &[])
}

fn alter_config(a: &AlterConfigArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    if let Some(k) = a.delete.iter().find(|k| a.set.iter().any(|(s, _)| s == *k)) {
        return Err(Error::Usage(format!("config {k} is both set and deleted")));
    }
    let r = ops::alter_topic_configs(client, &a.name, &a.set, &a.delete);
    report(vec![(a.name.clone(), r)], out, &[])
}

fn add_partitions(a: &AddPartitionsArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let topics = [a.name.clone()];
    let current = client.refresh_metadata(Some(&topics))?.topic(&a.name)?.partitions.len() as i32;
    let total = current.checked_add(a.num).ok_or_else(|| Error::Usage(format!("--num {} is too many", a.num)))?;
    let results = ops::create_partitions(client, &[(a.name.clone(), total)], timeout_ms(client))?;
    report(results, out, &[("partitions", json!(total))])
}

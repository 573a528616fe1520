//! `kbdump kbs`: what a server's db holds, by group: its kb_ids with
//! per-category key counts, KATO's global keys, foreign keys and kbdump's
//! temporary keys.

use std::process::ExitCode;

use serde_json::json;

use super::common::connect_redis;
use super::report::{print_json, print_text};
use super::GlobalOpts;
use crate::cli::KbsArgs;
use crate::kato::attribute::KeyspaceCensus;
use crate::kato::{display_bytes, Category, TEMP_KEY_PREFIX};
use crate::net::redis::RedisConn;

pub async fn run(args: KbsArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut conn = connect_redis(&args.redis).await?;
    let census = conn.census(&[]).await?;
    if global.json {
        print_json(&to_json(&census, &conn))?;
    } else {
        print_text(&to_text(&census, &conn))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn counts_json<'a>(counts: impl Iterator<Item = (&'a Category, &'a u64)>) -> serde_json::Value {
    let map: serde_json::Map<_, _> = counts.map(|(c, n)| (c.to_string(), json!(n))).collect();
    serde_json::Value::Object(map)
}

fn to_json(census: &KeyspaceCensus, conn: &RedisConn) -> serde_json::Value {
    let kbs: Vec<_> = census
        .kbs
        .iter()
        .map(|(kb, counts)| {
            json!({
                "kb_id": display_bytes(kb),
                "keys": counts.values().sum::<u64>(),
                "categories": counts_json(counts.iter()),
            })
        })
        .collect();
    let outside = census.kato_keys() + census.foreign + census.temporary;
    json!({
        "server": conn.address(),
        "db": conn.db(),
        "kbs": kbs,
        "kato": {"keys": census.kato_keys(), "categories": counts_json(census.kato.iter())},
        "foreign": {"keys": census.foreign},
        "temporary": {"keys": census.temporary},
        // Every key that belongs to no kb_id (KATO's global keys, foreign
        // keys, kbdump's temporary keys), as earlier versions reported.
        "unclassified_keys": outside,
        "total_keys": census.total(),
    })
}

fn to_text(census: &KeyspaceCensus, conn: &RedisConn) -> String {
    let columns: Vec<Category> = Category::of_kb().collect();
    let mut out = format!("{:<24} {:>10}", "kb_id", "keys");
    for c in &columns {
        out += &format!(" {:>11}", c.name());
    }
    out.push('\n');
    for (kb, counts) in &census.kbs {
        out += &format!(
            "{:<24} {:>10}",
            display_bytes(kb),
            counts.values().sum::<u64>()
        );
        for c in &columns {
            out += &format!(" {:>11}", counts.get(c).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    out += &format!(
        "\n{} kb_ids with {} keys\n",
        census.kbs.len(),
        census.kb_keys()
    );
    let by_category: Vec<String> = census
        .kato
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    out += &format!(
        "{} KATO global keys (never a kb_id){}\n",
        census.kato_keys(),
        if by_category.is_empty() {
            String::new()
        } else {
            format!(": {}", by_category.join(", "))
        }
    );
    out += &format!("{} foreign keys (not KATO's)\n", census.foreign);
    if census.temporary > 0 {
        out += &format!(
            "{} kbdump temporary keys ({}*: left by an interrupted restore, they expire within an hour; never exported)\n",
            census.temporary,
            String::from_utf8_lossy(TEMP_KEY_PREFIX)
        );
    }
    out += &format!(
        "{} keys in db {} of {}\n",
        census.total(),
        conn.db(),
        conn.address()
    );
    out
}

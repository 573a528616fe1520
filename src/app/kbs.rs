//! `kbdump kbs`: which kb_ids a server holds.

use std::process::ExitCode;

use serde_json::json;

use super::common::connect_redis;
use super::report::{print_json, print_text};
use super::GlobalOpts;
use crate::cli::KbsArgs;
use crate::kato::{display_bytes, Category};
use crate::net::redis::KbCensus;

pub async fn run(args: KbsArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut conn = connect_redis(&args.redis).await?;
    let census = conn.discover_kbs(b"*").await?;
    if global.json {
        let kbs: Vec<_> = census
            .kbs
            .iter()
            .map(|(kb, counts)| {
                let categories: serde_json::Map<_, _> =
                    counts.iter().map(|(c, n)| (c.to_string(), json!(n))).collect();
                json!({"kb_id": display_bytes(kb), "keys": counts.values().sum::<u64>(), "categories": categories})
            })
            .collect();
        print_json(
            &json!({"server": conn.address(), "kbs": kbs, "unclassified_keys": census.unclassified}),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    print_text(&text(&census))?;
    Ok(ExitCode::SUCCESS)
}

fn text(census: &KbCensus) -> String {
    let mut out = format!("{:<24} {:>10}", "kb_id", "keys");
    for c in Category::ALL {
        out += &format!(" {:>11}", c.name());
    }
    out += "\n";
    for (kb, counts) in &census.kbs {
        out += &format!(
            "{:<24} {:>10}",
            display_bytes(kb),
            counts.values().sum::<u64>()
        );
        for c in Category::ALL {
            out += &format!(" {:>11}", counts.get(&c).copied().unwrap_or(0));
        }
        out += "\n";
    }
    if census.unclassified > 0 {
        out += &format!(
            "{} keys belong to no kb_id (not KATO keys)\n",
            census.unclassified
        );
    }
    out
}

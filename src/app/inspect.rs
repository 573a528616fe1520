//! `kbdump inspect`: what an archive holds, without a server.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde_json::json;

use super::common::{open_archive, ArchiveInput};
use super::report::{human_bytes, iso_ms, print_json, print_text};
use super::{GlobalOpts, EXIT_ERROR};
use crate::cli::InspectArgs;
use crate::format::dump;
use crate::kato::{display_bytes, place_label, Category, Group};
use crate::plan::Method;
use crate::plan::{gate_report, GateVerdict};
use crate::source::archive::Overview;

#[derive(Default)]
struct Cell {
    blocks: u64,
    keys: u64,
    bytes: u64,
}

pub async fn run(args: InspectArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file)
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    let overview = open_archive(&input, args.db.db)?
        .overview()
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.name()))?;
    let cells = tally(&overview);
    if global.json {
        print_json(&to_json(&overview, &cells))?;
    } else {
        print_text(&to_text(&input.name(), &overview, &cells))?;
    }
    for problem in &overview.problems {
        eprintln!("kbdump: {}: damaged index: {problem}", input.name());
    }
    Ok(if overview.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    })
}

fn tally(overview: &Overview) -> BTreeMap<(Vec<u8>, Category), Cell> {
    let mut cells: BTreeMap<_, Cell> = BTreeMap::new();
    for (_, meta) in &overview.blocks {
        let cell = cells
            .entry((meta.kb_id.clone(), meta.category))
            .or_default();
        cell.blocks += 1;
        cell.keys += meta.records;
        cell.bytes += meta.payload_bytes;
    }
    cells
}

fn rdb_versions(overview: &Overview) -> BTreeSet<u16> {
    overview
        .blocks
        .iter()
        .flat_map(|(_, m)| m.rdb_versions.iter().copied())
        .collect()
}

fn to_json(overview: &Overview, cells: &BTreeMap<(Vec<u8>, Category), Cell>) -> serde_json::Value {
    let h = &overview.header;
    let contents: Vec<_> = cells
        .iter()
        .map(|((kb, cat), c)| {
            json!({"kb_id": display_bytes(kb), "group": Group::of(kb, *cat).name(),
                   "category": cat.to_string(), "keys": c.keys,
                   "bytes": c.bytes, "blocks": c.blocks, "recoverability": cat.recoverability().describe()})
        })
        .collect();
    let windows: Vec<_> = overview
        .kbs
        .iter()
        .map(|w| json!({"kb_id": display_bytes(&w.kb_id), "scan_started_ms": w.scan_started_ms,
                         "scan_finished_ms": w.scan_finished_ms, "keys": w.keys, "vanished": w.vanished,
                         "duplicates": w.duplicates}))
        .collect();
    json!({
        "format_version": h.format_version,
        "tool": h.tool,
        "created_at_ms": h.created_at_ms,
        "snapshot_at_ms": h.snapshot_at_ms,
        "shards": h.shards.iter().map(|s| json!({"master": s.master, "snapshot_at_ms": s.snapshot_at_ms}))
            .collect::<Vec<_>>(),
        "source": {"kind": h.source.kind, "address": h.source.address, "product": h.source.product,
                   "version": h.source.version, "rdb_version": h.source.rdb_version, "mode": h.source.mode, "db": h.source.db,
                   "masters": h.source.masters},
        "selection": {
            "kbs": h.selection.kbs.iter().map(|k| display_bytes(k)).collect::<Vec<_>>(),
            "global": h.selection.global,
            "foreign": h.selection.foreign,
            "categories": h.selection.categories.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "matches": h.selection.matches.iter().map(|k| display_bytes(k)).collect::<Vec<_>>(),
        },
        "rdb_versions": rdb_versions(overview),
        "restore_targets": gate_report(&overview.blocks),
        "keys": cells.values().map(|c| c.keys).sum::<u64>(),
        "bytes": cells.values().map(|c| c.bytes).sum::<u64>(),
        "contents": contents,
        "kbs": windows,
    })
}

fn to_text(name: &str, overview: &Overview, cells: &BTreeMap<(Vec<u8>, Category), Cell>) -> String {
    let h = &overview.header;
    let s = &h.source;
    let mut out = format!(
        "archive   {name}\nformat    v{} written by {}\ncreated   {}\n",
        h.format_version,
        h.tool,
        iso_ms(h.created_at_ms)
    );
    out += &match h.snapshot_at_ms {
        Some(at) => format!(
            "instant   {} (the server's snapshot: point-in-time)\n",
            iso_ms(at)
        ),
        None if !h.shards.is_empty() => {
            let mut out = "instant   one per shard: each master's snapshot (point-in-time per \
                           shard, not across shards)\n"
                .to_string();
            for shard in &h.shards {
                out += &format!(
                    "          {} at {}\n",
                    shard.master,
                    iso_ms(shard.snapshot_at_ms)
                );
            }
            out
        }
        None if s.kind == "redis-server" => {
            "instant   none: read with SCAN, each key inside its kb_id's window\n".to_string()
        }
        None => String::new(),
    };
    out += &format!(
        "source    {} {} {} at {} (db {}, {}), RDB version {}\n",
        s.kind,
        s.product,
        s.version,
        s.address,
        s.db,
        s.mode,
        s.rdb_version
            .map_or("unknown".to_string(), |v| v.to_string())
    );
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "all".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut groups: Vec<String> = h.selection.kbs.iter().map(|k| display_bytes(k)).collect();
    if h.selection.global {
        groups.push("KATO global keys".into());
    }
    if h.selection.foreign {
        groups.push("foreign keys".into());
    }
    out += &format!(
        "selection kbs: {}; categories: {}; keys: {}\n",
        list(groups),
        list(
            h.selection
                .categories
                .iter()
                .map(|c| c.to_string())
                .collect()
        ),
        list(
            h.selection
                .matches
                .iter()
                .map(|k| display_bytes(k))
                .collect()
        )
    );
    let versions: Vec<_> = rdb_versions(overview).iter().map(u16::to_string).collect();
    out += &format!("payloads  RDB versions {}\n", versions.join(", "));
    out += &gate_text(overview);
    out += &format!(
        "\n{:<24} {:<12} {:>10} {:>12}  recoverability\n",
        "kb_id", "category", "keys", "bytes"
    );
    for ((kb, cat), c) in cells {
        out += &format!(
            "{:<24} {:<12} {:>10} {:>12}  {}\n",
            place_label(kb, *cat),
            cat,
            c.keys,
            human_bytes(c.bytes),
            cat.recoverability().describe()
        );
    }
    out += &format!(
        "{:<24} {:<12} {:>10} {:>12}\n",
        "total",
        "",
        cells.values().map(|c| c.keys).sum::<u64>(),
        human_bytes(cells.values().map(|c| c.bytes).sum())
    );
    if !overview.kbs.is_empty() {
        out += "\nSCAN windows (each key was read at some moment inside its window):\n";
        for w in &overview.kbs {
            out += &format!(
                "  {:<24} {} .. {}  ({} keys, {} vanished, {} duplicates dropped)\n",
                window_label(&w.kb_id),
                iso_ms(w.scan_started_ms),
                iso_ms(w.scan_finished_ms),
                w.keys,
                w.vanished,
                w.duplicates
            );
        }
    }
    out
}

/// The version-gate table: one line per target release.
fn gate_text(overview: &Overview) -> String {
    let versions = rdb_versions(overview);
    let mut out = String::from("restore   (RESTORE per target, default configuration)\n");
    for v in gate_report(&overview.blocks) {
        out += &format!("  {:<14} {}\n", v.target, gate_line(&v, &versions));
    }
    out
}

fn gate_line(v: &GateVerdict, versions: &BTreeSet<u16>) -> String {
    // Names need a version; type ids mean the same in every version a
    // block can hold except 22/23, which type_id_name resolves per version.
    let names = |ids: &BTreeSet<u8>| -> String {
        let named: Vec<_> = ids
            .iter()
            .map(|&t| {
                let name = versions
                    .iter()
                    .find_map(|&r| dump::type_id_name(t, r))
                    .unwrap_or("unknown");
                format!("{t} {name}")
            })
            .collect();
        named.join(", ")
    };
    match v.method {
        Method::Raw => "raw: every payload as it is".to_string(),
        Method::Retagged => format!(
            "retag: trailer retagged to RDB {} for every payload",
            v.target_rdb_version
        ),
        Method::Logical => {
            let parts = [
                ("raw for", &v.raw_type_ids),
                ("retag for", &v.retag_type_ids),
                ("logical path for", &v.logical_type_ids),
            ];
            let said: Vec<_> = parts
                .iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(what, ids)| format!("{what} {}", names(ids)))
                .collect();
            said.join("; ")
        }
    }
}

/// A SCAN window's kb_id; the window of the keys outside kb_ids has none.
fn window_label(kb_id: &[u8]) -> String {
    if kb_id.is_empty() {
        "(outside kb_ids)".to_string()
    } else {
        display_bytes(kb_id)
    }
}

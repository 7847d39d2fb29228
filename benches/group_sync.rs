//! Group-sync rules benchmark: a user with 1,000 IdP groups against a 500-entry
//! mapping, in an organization with 1,000 groups. Prints CPU time per sync (target:
//! under 2 ms). `cargo bench --bench group_sync`.

// A benchmark stops at the first failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Instant;

use serde_json::json;
use ssogate::core::group_mapping::GroupMapping;
use ssogate::core::group_sync::{idp_groups, resolve};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    // Half the IdP groups are mapped (some to several groups), half match by name.
    let mapping_text: Vec<String> = (0..500).map(|i| format!("IdP Group {i} -> team {}", i % 250)).collect();
    let mapping = GroupMapping::parse(&mapping_text.join(", ")).unwrap();
    let claims = json!({ "groups": (0..1000).map(|i| format!("IdP Group {i}")).collect::<Vec<_>>() });
    let claims = claims.as_object().unwrap().clone();
    let org_groups: Vec<String> = (0..250).map(|i| format!("team {i}")).chain((500..1000).map(|i| format!("IdP Group {i}"))).collect();
    let existing: HashSet<&str> = org_groups.iter().map(String::as_str).collect();

    let rounds = 2000;
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut placed = 0;
    for _ in 0..rounds {
        let groups = idp_groups(&claims, "groups").unwrap();
        placed += resolve(&groups, &mapping, &existing, false).groups.len();
    }
    let cpu = cpu_seconds() - cpu;
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(placed / rounds, 750, "250 mapped teams + 500 same-name groups");
    println!("group sync: 1,000 IdP groups, 500-entry mapping, 1,000 organization groups");
    println!(
        "  {:.3} ms CPU per sync (target < 2 ms; {:.3} ms wall), claim parsing and rule resolution",
        cpu * 1000.0 / rounds as f64,
        wall * 1000.0 / rounds as f64
    );
}

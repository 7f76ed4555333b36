//! Dependency rules, checked against the resolved graph from `cargo metadata`:
//!
//! 1. `proto` depends on no I/O crate, directly or through another crate (dev-dependencies
//!    excepted: tests may use what they like).
//! 2. `hub` and `edge-agent` never depend on each other, in any kind of dependency.
//! 3. `printer-sim` depends on neither: it is the independent reference the agent is tested
//!    against.
//! 4. `proto-io`, the frame reader both share, depends on neither either (it sits between
//!    `proto` and the two of them).
//! 5. `printfile`, the reader of uploaded print files, depends on no I/O crate either: it
//!    reads hostile input from whatever reader it is given, and is tested and fuzzed so.
//!
//! ARCHITECTURE.md states the same rules; this is what keeps them true.

use std::collections::{BTreeSet, HashMap};

use cargo_metadata::{DependencyKind, Metadata, PackageId};

/// Crates that do I/O, or exist only to serve it, which `proto` must never reach.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "quinn",
    "quinn-proto",
    "rustls",
    "sqlx",
    "sqlx-core",
    "rusqlite",
    "axum",
    "hyper",
    "rumqttc",
    "reqwest",
    "nokhwa",
    "async-std",
    "smol",
];

/// A broken rule, with the path through the graph that breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub path: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.path.join(" -> "))
    }
}

/// Runs `cargo metadata` on this workspace.
pub fn workspace_metadata() -> anyhow::Result<Metadata> {
    Ok(cargo_metadata::MetadataCommand::new()
        .manifest_path(crate::workspace_root().join("Cargo.toml"))
        .exec()?)
}

/// Every violation of the rules in `metadata`.
pub fn check(metadata: &Metadata) -> Vec<Violation> {
    let graph = Graph::new(metadata);
    let mut violations = Vec::new();
    for io_crate in IO_CRATES {
        if let Some(path) = graph.path("proto", io_crate, false) {
            violations.push(Violation { rule: "proto must not depend on an I/O crate", path });
        }
        if let Some(path) = graph.path("printfile", io_crate, false) {
            violations.push(Violation { rule: "printfile must not depend on an I/O crate", path });
        }
    }
    for (from, to) in [
        ("hub", "edge-agent"),
        ("edge-agent", "hub"),
        ("printer-sim", "edge-agent"),
        ("printer-sim", "hub"),
        ("proto-io", "edge-agent"),
        ("proto-io", "hub"),
    ] {
        if let Some(path) = graph.path(from, to, true) {
            let rule = if from == "printer-sim" {
                "printer-sim must stay independent of the code it tests"
            } else if from == "proto-io" {
                "proto-io must stay below the agent and the hub"
            } else {
                "hub and edge-agent must stay independent"
            };
            violations.push(Violation { rule, path });
        }
    }
    violations
}

struct Graph<'a> {
    names: HashMap<&'a PackageId, &'a str>,
    /// Edges with whether they are dev-only.
    edges: HashMap<&'a PackageId, Vec<(&'a PackageId, bool)>>,
    roots: HashMap<&'a str, &'a PackageId>,
}

impl<'a> Graph<'a> {
    fn new(metadata: &'a Metadata) -> Graph<'a> {
        let names = metadata.packages.iter().map(|p| (&p.id, p.name.as_str())).collect();
        let roots = metadata
            .packages
            .iter()
            .filter(|p| metadata.workspace_members.contains(&p.id))
            .map(|p| (p.name.as_str(), &p.id))
            .collect();
        let mut edges: HashMap<_, Vec<_>> = HashMap::new();
        for node in metadata.resolve.iter().flat_map(|r| &r.nodes) {
            for dep in &node.deps {
                let dev_only =
                    dep.dep_kinds.iter().all(|k| matches!(k.kind, DependencyKind::Development));
                edges.entry(&node.id).or_default().push((&dep.pkg, dev_only));
            }
        }
        Graph { names, edges, roots }
    }

    /// A path of package names from workspace member `from` to any package named `to`.
    /// Dev-dependencies count only from `from` itself and only when `with_dev`.
    fn path(&self, from: &str, to: &str, with_dev: bool) -> Option<Vec<String>> {
        let start = *self.roots.get(from)?;
        let mut seen = BTreeSet::new();
        let mut stack = vec![(start, vec![from.to_owned()])];
        while let Some((id, path)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            for &(dep, dev_only) in self.edges.get(id).into_iter().flatten() {
                // A dependency's own dev-dependencies never reach the graph, so only the
                // first hop can be a dev edge.
                if dev_only && !(with_dev && id == start) {
                    continue;
                }
                let name = self.names.get(dep).copied().unwrap_or("?");
                let mut next = path.clone();
                next.push(name.to_owned());
                if name == to {
                    return Some(next);
                }
                stack.push((dep, next));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> Metadata {
        workspace_metadata().expect("cargo metadata runs")
    }

    fn id_of<'a>(metadata: &'a Metadata, name: &str) -> &'a PackageId {
        &metadata.packages.iter().find(|p| p.name.as_str() == name).unwrap().id
    }

    /// Adds the edge `from -> to` to the resolved graph, as if a manifest had gained it.
    fn add_edge(metadata: &mut Metadata, from: &str, to_id: PackageId, to_name: &str) {
        let from_id = id_of(metadata, from).clone();
        let mut json = serde_json_value(metadata);
        let nodes = json["resolve"]["nodes"].as_array_mut().unwrap();
        let node = nodes.iter_mut().find(|n| n["id"] == from_id.repr.as_str()).unwrap();
        node["deps"].as_array_mut().unwrap().push(serde_json::json!({
            "name": to_name,
            "pkg": to_id.repr,
            "dep_kinds": [{ "kind": null, "target": null }],
        }));
        *metadata = serde_json::from_value(json).unwrap();
    }

    fn serde_json_value(metadata: &Metadata) -> serde_json::Value {
        serde_json::to_value(metadata).unwrap()
    }

    /// Adds a package named `name` to the graph (for crates the workspace does not use).
    fn add_package(metadata: &mut Metadata, name: &str) -> PackageId {
        let template = metadata.packages.iter().find(|p| p.name.as_str() == "proto").unwrap();
        let mut json = serde_json::to_value(template).unwrap();
        let repr = format!("registry+https://github.com/rust-lang/crates.io-index#{name}@1.0.0");
        json["name"] = name.into();
        json["id"] = repr.clone().into();
        json["dependencies"] = serde_json::json!([]);
        let mut all = serde_json_value(metadata);
        all["packages"].as_array_mut().unwrap().push(json);
        all["resolve"]["nodes"].as_array_mut().unwrap().push(serde_json::json!({
            "id": repr, "dependencies": [], "deps": [], "features": [],
        }));
        *metadata = serde_json::from_value(all).unwrap();
        PackageId { repr }
    }

    #[test]
    fn workspace_follows_the_dependency_rules() {
        let violations = check(&metadata());
        assert!(
            violations.is_empty(),
            "dependency rules broken (see ARCHITECTURE.md):\n{}",
            violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
    }

    #[test]
    fn proto_gaining_tokio_is_caught() {
        let mut metadata = metadata();
        let tokio = add_package(&mut metadata, "tokio");
        add_edge(&mut metadata, "proto", tokio, "tokio");
        assert_eq!(
            check(&metadata),
            [Violation {
                rule: "proto must not depend on an I/O crate",
                path: vec!["proto".into(), "tokio".into()],
            }]
        );
    }

    #[test]
    fn proto_reaching_tokio_through_another_crate_is_caught() {
        let mut metadata = metadata();
        let tokio = add_package(&mut metadata, "tokio");
        let middle = add_package(&mut metadata, "innocent-helper");
        add_edge(&mut metadata, "innocent-helper", tokio, "tokio");
        add_edge(&mut metadata, "proto", middle, "innocent-helper");
        let violations = check(&metadata);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].path, ["proto", "innocent-helper", "tokio"]);
    }

    #[test]
    fn hub_depending_on_the_agent_is_caught() {
        let mut metadata = metadata();
        let agent = id_of(&metadata, "edge-agent").clone();
        add_edge(&mut metadata, "hub", agent, "edge_agent");
        let violations = check(&metadata);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].path, ["hub", "edge-agent"]);
    }

    #[test]
    fn the_shared_frame_reader_depending_on_the_hub_is_caught() {
        let mut metadata = metadata();
        let hub = id_of(&metadata, "hub").clone();
        add_edge(&mut metadata, "proto-io", hub, "hub");
        let violations = check(&metadata);
        // The agent now reaches the hub through proto-io too.
        assert!(
            violations.iter().any(|v| v.rule == "proto-io must stay below the agent and the hub"
                && v.path == ["proto-io", "hub"]),
            "{violations:?}"
        );
        assert!(
            violations.iter().any(|v| v.path == ["edge-agent", "proto-io", "hub"]),
            "{violations:?}"
        );
    }
}

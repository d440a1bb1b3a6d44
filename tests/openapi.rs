//! `GET /openapi.json` describes exactly the routes the code defines: every
//! `warp::path!` in `src/http/` has a document entry and every entry has a route; every
//! documented operation answers on a running server (not the router's 404/405); and every
//! path the shared contract (`API.md`) names is documented.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{json_with_status, spawn_app};
use serde_json::Value;

/// A path with its parameters blanked: `/v1/jobs/{id}` → `/v1/jobs/{}`.
fn normalize(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let is_param = (segment.starts_with('{') && segment.ends_with('}'))
                || (segment.starts_with('<') && segment.ends_with('>'));
            if is_param {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path templates of every `warp::path!(…)` in `src/http/*.rs`. A `String` segment
/// is a parameter; a trailing `..` is the rest of the path (an object key).
fn routes_in_code() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/http") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("source");
        for (start, _) in text.match_indices("warp::path!(") {
            let rest = &text[start + "warp::path!(".len()..];
            let inner = &rest[..rest.find(')').expect("closing parenthesis")];
            let segments: Vec<String> = inner
                .split('/')
                .map(|s| s.trim())
                .map(|s| match s {
                    "String" | ".." => "{}".to_string(),
                    quoted => quoted.trim_matches('"').to_string(),
                })
                .collect();
            routes.insert(format!("/{}", segments.join("/")));
        }
    }
    routes
}

/// Every path `API.md` names (`/functions/v1/x`, `/v1/…`, `/auth/v1/…`, `/storage/…`).
fn routes_in_contract(text: &str) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for prefix in [
        "/functions/v1/",
        "/v1/",
        "/auth/v1/",
        "/storage/v1/",
        "/dev/",
    ] {
        for (start, _) in text.match_indices(prefix) {
            if start > 0 && !" `(".contains(&text[start - 1..start]) {
                continue;
            }
            let path: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/-_{}<>.".contains(*c))
                .collect();
            let path = normalize(path.trim_end_matches(['.', '/']));
            // `/functions/v1/<name>` stands for all of them; bare prefixes are prose.
            if path != "/functions/v1/{}" && !prefix.starts_with(&format!("{path}/")) {
                routes.insert(path);
            }
        }
    }
    // Sections 2 and 3 name functions by themselves: "### 2.3 `generate-image`",
    // "- `create-portal-session`: …".
    let functions = text
        .split("\n## 2.")
        .nth(1)
        .and_then(|rest| rest.split("\n## 4.").next())
        .unwrap_or_default();
    for line in functions
        .lines()
        .filter(|l| l.starts_with("### ") || l.starts_with("- `"))
    {
        for name in line.split('`').skip(1).step_by(2) {
            let is_name = name.contains('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if is_name {
                routes.insert(format!("/functions/v1/{name}"));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_document_matches_the_routes_and_every_operation_answers() {
    let app = spawn_app().await;
    let doc = json_with_status(app.get("/openapi.json", None).await, 200).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<String> = paths.keys().map(|p| normalize(p)).collect();

    let in_code = routes_in_code();
    let undocumented: Vec<_> = in_code.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a document entry: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        stale.is_empty(),
        "document entries without a route: {stale:?}"
    );

    for (path, item) in paths {
        let concrete = path.replace("{bucket}", "uploads").replace(['{', '}'], "");
        for method in item.as_object().expect("path item").keys() {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let res = app
                .client
                .request(method.clone(), app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path}: {text}");
            assert!(
                !(status == 404 && text.contains("no such route")),
                "{method} {path} has no route: {text}"
            );
            let operation: &Value = &item[method.as_str().to_lowercase()];
            assert!(operation["summary"].is_string(), "{method} {path}");
        }
    }
    app.stop().await;
}

/// Contract paths whose issue is still open.
const NOT_YET_BUILT: &[&str] = &[];

/// Every path the shared contract names is in the document.
#[tokio::test]
async fn the_document_covers_the_contract() {
    let contract = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/API.md");
    let Ok(text) = std::fs::read_to_string(&contract) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI has shared/ beside the clone"
        );
        eprintln!("{} not found: contract check skipped", contract.display());
        return;
    };
    let app = spawn_app().await;
    let doc = json_with_status(app.get("/openapi.json", None).await, 200).await;
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| normalize(p))
        .collect();
    let named = routes_in_contract(&text);
    assert!(named.len() > 25, "the contract parse found {named:?}");
    let missing: Vec<_> = named
        .difference(&documented)
        .filter(|p| !NOT_YET_BUILT.contains(&p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "contract paths not documented: {missing:?}"
    );
    app.stop().await;
}

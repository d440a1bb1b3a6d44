//! The pages' headers and sources: a strict Content-Security-Policy on every page,
//! content types, ETags and caching of the embedded assets, and source rules (no inline
//! script or style, no HTML parsing of text, no CDN).

mod common;

use std::path::Path;

use common::spawn_app;

/// Every page has the strict CSP; pages and assets have types, ETags and caching; the
/// sources keep to the rules (no inline script or style, no HTML parsing, no CDN).
#[tokio::test]
async fn pages_carry_a_strict_csp_and_assets_are_cached() {
    let app = spawn_app().await;
    for page in ["/", "/admin"] {
        let res = app.get(page, None).await;
        assert_eq!(res.status(), 200, "{page}");
        let headers = res.headers().clone();
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "img-src 'self' data: blob:",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{page}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        let etag = headers["etag"].to_str().expect("etag").to_string();
        let html = res.text().await.expect("html");
        assert!(!html.contains("__V__"), "{page} has an unfilled version");
        let again = app
            .client
            .get(app.url(page))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status(), 304, "{page}");
        let head = app
            .client
            .head(app.url(page))
            .send()
            .await
            .expect("request");
        assert_eq!(head.status(), 200);
        assert!(head.headers().contains_key("content-security-policy"));

        let version = html
            .split("/assets/app.css?v=")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a versioned stylesheet")
            .to_string();
        let css = app.get(&format!("/assets/app.css?v={version}"), None).await;
        assert_eq!(css.status(), 200);
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
        assert_eq!(
            css.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(css.headers().contains_key("etag"));
    }
    let module = app.get("/assets/js/studio.js", None).await;
    assert_eq!(
        module.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(module.headers()["cache-control"], "no-cache");
    common::assert_envelope(app.get("/assets/nope.js", None).await, 404, "NOT_FOUND").await;
    common::assert_envelope(
        app.get("/assets/../Cargo.toml", None).await,
        404,
        "NOT_FOUND",
    )
    .await;

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut sources = vec![];
    for dir in [web.clone(), web.join("js")] {
        for entry in std::fs::read_dir(dir).expect("src/web") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("source");
        let name = path.display();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "localStorage",
            "http://",
            "https://",
            "style=\"",
        ] {
            assert!(!text.contains(banned), "{name} uses {banned}");
        }
        if name.to_string().ends_with(".html") {
            for script in text.split("<script").skip(1) {
                assert!(
                    script
                        .trim_start()
                        .starts_with("type=\"module\" src=\"/assets/"),
                    "{name}: inline script"
                );
            }
        }
    }
    app.stop().await;
}

//! `meshtel demo list` / `apply`: the client of the demo's API.

use super::*;

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

async fn json_of(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        bail!(
            "{what}: HTTP 404 from {}: either that query service runs no demo (a `meshtel \
             serve`?), or --server has a path it does not serve; give the address `meshtel \
             demo` printed (with its --query-base-path, if it has one), without a page's path",
            response.url()
        );
    }
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer to {what}"))?;
    let json: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{what}: HTTP {status}, not JSON: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if !status.is_success() {
        bail!(
            "{what}: {}",
            json["error"].as_str().unwrap_or(&json.to_string())
        );
    }
    Ok(json)
}

/// Prints every scenario, the current one marked.
pub async fn list(base: &str) -> anyhow::Result<()> {
    let response = http()?
        .get(url(base, "/api/demo"))
        .send()
        .await
        .with_context(|| format!("is `meshtel demo` running? no answer from {base}"))?;
    let overview = json_of(response, "GET /api/demo").await?;
    let current = overview["current"].as_str();
    let scenarios: Vec<ScenarioJson> = serde_json::from_value(overview["scenarios"].clone())
        .context("reading the scenario list")?;
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    println!("  {:width$}  base rules only", NONE, width = width);
    for s in &scenarios {
        let mark = if Some(s.name.as_str()) == current {
            '*'
        } else {
            ' '
        };
        println!("{mark} {:width$}  {}", s.name, s.title, width = width);
    }
    if current.is_none() {
        println!("(no scenario applied; `meshtel demo apply NAME` applies one)");
    }
    Ok(())
}

/// Applies a scenario and prints what to look at.
pub async fn apply(base: &str, name: &str) -> anyhow::Result<()> {
    let response = http()?
        .put(url(base, "/api/demo/scenario"))
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(json!({"name": name}).to_string())
        .send()
        .await
        .with_context(|| format!("is `meshtel demo` running? no answer from {base}"))?;
    let applied = json_of(response, "PUT /api/demo/scenario").await?;
    let took = applied["tookMs"].as_u64().unwrap_or(0);
    match scenarios::find(name) {
        Some(s) => {
            println!(
                "{}: {} (in force on every proxy after {took} ms)",
                s.name,
                s.title()
            );
            println!("\nLook at: {}", s.look_at());
        }
        None => {
            println!("no scenario: base rules only (in force on every proxy after {took} ms)")
        }
    }
    Ok(())
}

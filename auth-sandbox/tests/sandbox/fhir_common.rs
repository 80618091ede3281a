//! What the FHIR test modules share: a store served on loopback, and a client.

use std::sync::Arc;

use auth_sandbox::fhir::{FhirStore, sample_patients};
use reqwest::{Client, Method, Response};
use serde_json::Value;

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) store: Arc<FhirStore>,
    pub(crate) http: Client,
}

/// A store with the sample patients, served at `http://127.0.0.1:PORT/fhir`.
pub(crate) async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let store = FhirStore::new(base.clone());
    store.seed(sample_patients());
    let app = axum::Router::new().nest("/fhir", store.router());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { base, store, http: Client::new() }
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        match path.trim_start_matches('/') {
            "" => self.base.clone(),
            path => format!("{}/{path}", self.base),
        }
    }

    /// A request with a FHIR JSON body.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.http.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None, &[]).await
    }

    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    /// Creates a resource and returns its id.
    pub(crate) async fn create(&self, body: &Value) -> String {
        let t = body["resourceType"].as_str().unwrap();
        let response = self.post(t, body).await;
        assert_eq!(response.status(), 201, "create {body}");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }
}

/// An answer's OperationOutcome: its status, first issue code and diagnostics.
pub(crate) async fn outcome(response: Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/fhir+json"),
        "errors are FHIR JSON"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issue = &body["issue"][0];
    (
        status,
        issue["code"].as_str().unwrap_or_default().to_owned(),
        issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `(search.mode, resourceType/id)` of a Bundle's entries.
pub(crate) fn entries(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let r = &e["resource"];
                    (
                        e["search"]["mode"].as_str().unwrap_or_default().to_owned(),
                        format!(
                            "{}/{}",
                            r["resourceType"].as_str().unwrap_or_default(),
                            r["id"].as_str().unwrap_or_default()
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

//! `$operation` calls at system, type and instance level: by `POST` with a
//! `Parameters` body, or by `GET` with simple parameters in the query (for
//! operations that change nothing).

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use url::Url;

use auth_core::{Error, Result};

use crate::client::{FhirClient, FhirResponse, type_name, type_of};
use crate::model::Resource;
use crate::search::SearchParams;

/// One `$operation` call, built up and then sent with [`FhirClient::operation`].
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    name: String,
    target: Target,
    query: SearchParams,
    input: Option<Bytes>,
    /// `Content-Type` of an input that is not a resource (`$graphql` takes JSON).
    input_type: Option<&'static str>,
    get: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    System,
    Type(String),
    Instance(String, String),
}

impl Operation {
    /// `[base]/$name`.
    pub fn system(name: &str) -> Result<Self> {
        Self::new(Target::System, name)
    }

    /// `[base]/[type]/$name`.
    pub fn on_type(resource_type: &str, name: &str) -> Result<Self> {
        Self::new(Target::Type(resource_type.to_owned()), name)
    }

    /// `[base]/[type]/$name`, the type named by `R`.
    pub fn on_type_of<R: Resource>(name: &str) -> Result<Self> {
        Self::on_type(type_of::<R>()?, name)
    }

    /// `[base]/[type]/[id]/$name`.
    pub fn on_instance(resource_type: &str, id: &str, name: &str) -> Result<Self> {
        Self::new(Target::Instance(resource_type.to_owned(), id.to_owned()), name)
    }

    /// `[base]/[type]/[id]/$name`, the type named by `R`.
    pub fn on_instance_of<R: Resource>(id: &str, name: &str) -> Result<Self> {
        Self::on_instance(type_of::<R>()?, id, name)
    }

    fn new(target: Target, name: &str) -> Result<Self> {
        let bare = name.strip_prefix('$').unwrap_or(name);
        let valid =
            !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(Error::configuration(format!(
                "`{name}` is not an operation name (like `$everything`)"
            )));
        }
        Ok(Self {
            name: format!("${bare}"),
            target,
            query: SearchParams::new(),
            input: None,
            input_type: None,
            get: false,
        })
    }

    /// The operation's name, with its `$`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends the call as `GET` with these parameters in the query. Only for
    /// operations that change nothing, and only with simple parameters (FHIR's
    /// rule); such a call is retried like a read.
    pub fn get(mut self, params: SearchParams) -> Self {
        self.query = params;
        self.input = None;
        self.input_type = None;
        self.get = true;
        self
    }

    /// Sends the call as `POST` with `parameters` (a `Parameters` resource, or
    /// another resource when the operation takes one) as the body.
    pub fn input<R: Resource>(mut self, parameters: &R) -> Result<Self> {
        type_name(parameters)?;
        let body = serde_json::to_vec(parameters).map_err(|e| {
            Error::configuration(format!("the operation's input cannot be written as JSON: {e}"))
        })?;
        self.input = Some(Bytes::from(body));
        self.input_type = None;
        self.get = false;
        Ok(self)
    }

    /// Sends the call as `POST` with `body` as plain JSON (`application/json`),
    /// for the operations whose input is not a resource, such as `$graphql`.
    pub fn input_json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Result<Self> {
        let body = serde_json::to_vec(body).map_err(|e| {
            Error::configuration(format!("the operation's input cannot be written as JSON: {e}"))
        })?;
        self.input = Some(Bytes::from(body));
        self.input_type = Some("application/json");
        self.get = false;
        Ok(self)
    }

    fn url(&self, client: &FhirClient) -> Result<Url> {
        let mut url = match &self.target {
            Target::System => client.url(&[&self.name])?,
            Target::Type(t) => client.url(&[t, &self.name])?,
            Target::Instance(t, id) => client.url(&[t, id, &self.name])?,
        };
        if !self.query.is_empty() {
            url.set_query(Some(&self.query.to_query()));
        }
        Ok(url)
    }
}

impl FhirClient {
    /// Calls an operation and reads its result as `O`: the resource it returns, a
    /// `Parameters` for an operation with several outputs, or
    /// [`JsonResource`](crate::JsonResource) for anything.
    pub async fn operation<O: Resource>(&self, operation: &Operation) -> Result<O> {
        self.operation_response(operation).await?.resource()
    }

    /// Calls an operation and hands back the response as it came (an operation
    /// may answer with no body, or with something other than a resource).
    pub async fn operation_response(&self, operation: &Operation) -> Result<FhirResponse> {
        let url = operation.url(self)?;
        if operation.get {
            return self.send(Method::GET, url, HeaderMap::new(), None).await;
        }
        // A POST without input still carries an empty Parameters: servers expect a body.
        let body = operation
            .input
            .clone()
            .unwrap_or_else(|| Bytes::from_static(br#"{"resourceType":"Parameters"}"#));
        let mut headers = HeaderMap::new();
        if let Some(content_type) = operation.input_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        self.send(Method::POST, url, headers, Some(body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_get_their_dollar() {
        assert_eq!(Operation::system("everything").unwrap().name(), "$everything");
        assert_eq!(Operation::on_type("Patient", "$match").unwrap().name(), "$match");
        for bad in ["", "$", "$../x", "$a/b", "$a?b=1"] {
            assert!(Operation::system(bad).is_err(), "{bad}");
        }
    }
}

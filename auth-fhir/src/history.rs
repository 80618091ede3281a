//! History: every version of a resource, of a type, or of the whole server, as
//! `history` Bundles, paged like a search.

use auth_core::Result;

use crate::client::{FhirClient, type_of};
use crate::model::{Bundle, Resource};
use crate::search::{FhirStream, SearchParams};

/// Whose history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// `[base]/[type]/[id]/_history`: every version of one resource.
    Instance {
        /// The resource type.
        resource_type: String,
        /// The logical id.
        id: String,
    },
    /// `[base]/[type]/_history`: every version of every resource of a type.
    Type(String),
    /// `[base]/_history`: every version of everything.
    System,
}

impl History {
    /// One resource's versions.
    pub fn instance(resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self::Instance { resource_type: resource_type.into(), id: id.into() }
    }

    /// One resource's versions, its type named by `R`.
    pub fn instance_of<R: Resource>(id: impl Into<String>) -> Result<Self> {
        Ok(Self::instance(type_of::<R>()?, id))
    }

    /// A type's versions.
    pub fn of_type(resource_type: impl Into<String>) -> Self {
        Self::Type(resource_type.into())
    }

    fn segments(&self) -> Vec<&str> {
        match self {
            Self::Instance { resource_type, id } => vec![resource_type, id, "_history"],
            Self::Type(resource_type) => vec![resource_type, "_history"],
            Self::System => vec!["_history"],
        }
    }
}

impl FhirClient {
    /// The first page of a history (`_count`, `_since`, `_at` in `params`), newest
    /// version first. Entries of deleted versions have no resource; their
    /// `request.method` is `DELETE`. `R` is the type of the resources in it
    /// ([`JsonResource`](crate::JsonResource) for a system history).
    pub async fn history<R: Resource>(&self, of: &History, params: &SearchParams) -> Result<Bundle<R>> {
        let url = self.history_url(of, params)?;
        self.get(url).await?.json()
    }

    /// Every page of a history, following `next` links as
    /// [`FhirClient::search_all`] does.
    pub fn history_pages<R: Resource>(&self, of: &History, params: &SearchParams) -> FhirStream<Bundle<R>> {
        match self.history_url(of, params) {
            Ok(url) => self.pages(url, "FHIR history"),
            Err(e) => Box::pin(futures_util::stream::iter([Err(e)])),
        }
    }

    fn history_url(&self, of: &History, params: &SearchParams) -> Result<url::Url> {
        let mut url = self.url(&of.segments())?;
        if !params.is_empty() {
            url.set_query(Some(&params.to_query()));
        }
        Ok(url)
    }
}

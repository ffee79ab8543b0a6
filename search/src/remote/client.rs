//! [`RemoteSearch`]: the [`SearchReader`] of a node whose searches go to a search role over
//! HTTP (`search.url`, e.g. the Kubernetes Service in front of the replicas).

use std::time::Duration;

use async_trait::async_trait;
use ports::{PortError, SearchPage, SearchQuery, SearchReader, Service};
use serde::de::DeserializeOwned;

use super::{PageBody, QueryBody, StatsBody, SEARCH_PATH, STATS_PATH};

pub struct RemoteSearch {
    client: reqwest::Client,
    base_url: String,
}

impl RemoteSearch {
    /// Queries the role at `base_url` (`http://host:port`, no trailing path); each request
    /// gives up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, PortError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| PortError::rejected(Service::SearchIndex, error))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Decodes a 2xx answer; a refused request is `Rejected`, an unreachable or failing replica
    /// `Unavailable` (retryable: another replica may answer).
    async fn answer<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, PortError> {
        let response = request
            .send()
            .await
            .map_err(|error| PortError::unavailable(Service::SearchIndex, error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| PortError::unavailable(Service::SearchIndex, error))?;
        if status.is_client_error() {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(PortError::rejected(
                Service::SearchIndex,
                format!("{status}: {text}"),
            ));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(PortError::unavailable(
                Service::SearchIndex,
                format!("{status}: {text}"),
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|error| PortError::corrupt(Service::SearchIndex, "search answer", error))
    }
}

#[async_trait]
impl SearchReader for RemoteSearch {
    async fn search(&self, query: SearchQuery) -> Result<SearchPage, PortError> {
        let url = format!("{}{SEARCH_PATH}", self.base_url);
        let request = self.client.post(url).json(&QueryBody::from(query));
        let page: PageBody = self.answer(request).await?;
        page.into_page()
            .map_err(|error| PortError::corrupt(Service::SearchIndex, "search cursor", error))
    }

    async fn live_messages(&self) -> Result<u64, PortError> {
        let url = format!("{}{STATS_PATH}", self.base_url);
        let stats: StatsBody = self.answer(self.client.get(url)).await?;
        Ok(stats.live_messages)
    }
}

//! The filter's configuration contract and the names it shares with the control plane, from
//! `switchyard-contract` (where they are defined and tested), under the names the filter's
//! modules use.

pub use switchyard_contract::config::*;
pub use switchyard_contract::limits::RATE_LIMIT_HEADERS;
pub use switchyard_contract::names::{
    CLIENT_API_HEADER, CLUSTER_HEADER, INTERNAL_HEADER_PREFIX, LOCAL_REPLY_DETAILS,
    METADATA_NAMESPACE, METADATA_TARGET_FIELD, METRIC_TAGS, RECORDS_ROOT_ID, STREAM_HEADER,
    UPSTREAM_ROOT_ID,
};
pub use switchyard_contract::record::USAGE_FILTER_STATE;

//! `ping`: answers `{}`.

use wire::frames::Request;

use super::shared::{ready, Answer};
use crate::dispatch::Caller;
use crate::node::Node;
use crate::OpError;

pub(crate) fn start(_node: &Node, _caller: &Caller, _request: &Request) -> Result<Answer, OpError> {
    Ok(ready(Ok("{}".to_owned())))
}

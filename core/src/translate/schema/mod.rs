//! Wire types per API, prefixed by the API. Unknown fields are tolerated (and kept where a
//! translator passes them on); only what a translation needs is typed.

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod openai;

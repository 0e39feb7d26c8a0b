//! MissionControl's MCP interface: one registry of tools (`registry`: names, toolsets, schemas
//! derived from `args`), one set of handlers over the typed HTTP client (`handlers`), served over
//! three transports — stdio (`server::serve_stdio`, behind `mc mcp`), MCP Streamable HTTP and the
//! plain `GET /mcp/tools` + `POST /mcp/call` routes (`http`, mounted by the control plane).
//!
//! Architecture invariant: this crate reaches the control plane only through `mc-client`; it does
//! not depend on `mc-server` (the server depends on it) nor on any store.

pub mod args;
pub mod error;
pub mod handlers;
pub mod http;
pub mod registry;
pub mod server;
pub mod stdio;
pub mod views;

pub use error::ToolError;
pub use http::HttpMcp;
pub use registry::{Toolset, Toolsets};
pub use server::{Bridge, ServeError, serve_stdio};

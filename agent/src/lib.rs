//! dait-agent

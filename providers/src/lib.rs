//! AI provider clients.

//! PLACEHOLDER: bearer-token validation (being written by the auth helper).

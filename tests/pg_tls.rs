//! TLS on the PostgreSQL engine, on a private server with a self-signed certificate.

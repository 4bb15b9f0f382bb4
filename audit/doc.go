// Package audit checks Docker Engine APIs the way an attacker with a port
// scanner would: it connects to each target port from outside, finds out
// whether a Docker API answers there in plain HTTP or TLS, and whether that
// API can be used without a client certificate, with a client certificate
// from a CA nobody should trust, or with a server certificate that is
// expired, misnamed, weak or not issued by this dockca CA. One open,
// unauthenticated daemon is a root shell for anyone on the network, so the
// audit is meant to run against a whole fleet and in CI (see ExitCode).
//
// The audit never changes anything on a target: the only HTTP requests it
// sends are GET /_ping and GET /version. Everything it does is bounded:
// targets are parsed up front and ranges larger than a /16 (MaxAddresses) are
// refused before any packet is sent; at most Options.Concurrency
// connections are in flight; every connection (dial, handshake, request)
// has Options.Timeout; and the whole run has Options.Deadline.
//
// For every open port the audit makes at most four connections, one after
// another:
//
//  1. plain HTTP: GET /_ping, then GET /version on the same connection;
//  2. unless that found a plain HTTP server, a TLS handshake (TLS 1.0 to
//     1.3) without a client certificate, then the same two requests if the
//     server lets them through;
//  3. if the server required a client certificate, a TLS handshake with a
//     throwaway self-signed ECDSA P-256 client certificate made in memory
//     once per run, then the same two requests;
//  4. for TLS servers, a handshake limited to TLS 1.0 and 1.1, which only
//     checks whether the server agrees to the old version.
//
// Findings and their severities:
//
//	critical  plain-http-api          plain-HTTP Docker API answers /_ping or /version without authentication
//	critical  tls-no-client-verify    TLS Docker API accepts a connection without a client certificate
//	critical  tls-untrusted-client    TLS Docker API accepts a self-signed client certificate from an unknown CA
//	high      plain-http-unencrypted  plain-HTTP Docker API that refuses requests (authentication travels in clear)
//	high      cert-expired            server certificate expired
//	high      cert-not-yet-valid      server certificate not yet valid
//	high      cert-expiring           server certificate expires within 30 days
//	high      cert-name-mismatch      server certificate names do not cover the target host or IP
//	high      cert-weak-key           server key is RSA under 2048 bits or ECDSA under 256 bits
//	high      tls-legacy-version      server accepts TLS 1.0 or 1.1
//	high      cert-foreign-ca         server certificate not issued by this dockca CA (only with Options.Roots)
//	high      client-ca-foreign       server asks for client certificates from CAs other than this dockca CA (only with Options.Roots)
//	medium    cert-chain-unverifiable server certificate chain cannot be evaluated against the dockca root for a reason other than a foreign issuer
//	medium    cert-weak-signature     server certificate signed with MD5 or SHA-1
//	medium    tls-inconclusive        TLS port where it could not be determined whether client certificates are required, or where the handshake failed before a certificate was seen
//	medium    tls-other-auth          TLS Docker API accepts a connection without a client certificate but refuses the request (some other authentication)
//	info      mtls-ok                 mutual TLS required (with Options.Roots: and the server certificate is issued by this dockca CA)
//	info      gate-ok                 a dockca gate (recognised by the TLS application protocol it chooses, before it refuses a client without a certificate): mutual TLS required, every request judged by dockca; the detail names its certificate
//
// Open ports that answer but are clearly not Docker APIs are listed in the
// report's targets without findings. A TLS port that demands a client
// certificate cannot show what it serves, so its TLS findings are reported
// whatever it is.
package audit

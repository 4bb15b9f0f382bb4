// Package authz is dockca's Docker authorization plugin. dockerd trusts any
// client certificate that chains to its --tlscacert until the certificate
// expires: it never consults a revocation list (moby issue 27778), and every
// valid certificate is root on the host because the free engine has no roles.
// This package closes both gaps from the one place dockerd lets an outsider
// decide: the legacy "authz" plugin protocol, which hands the plugin the
// client's certificate chain, the method, the URI and (for JSON requests under
// 1 MiB) the body of every API call.
//
// A decision runs in this order and fails closed at each step: the peer
// certificate must chain to the pinned dockca root (no other anchor is
// trusted, whatever dockerd's CA bundle holds), be within its validity
// period, and not be revoked according to a RevocationChecker (the dockca
// database in local mode, a signed CRL fetched from the dockca service in
// remote mode, see CRLSource). The certificate's single Subject OU names its
// role, and the role's rules — the built-in ones in builtin-policy.yaml or
// those of a --policy file — decide on the method, the path and, for
// requests that can escalate to host root, the body.
//
// Requests that carry no certificate come over the unix socket (dockca
// daemons always run --tlsverify on TCP, so an anonymous TCP request cannot
// reach dockerd) and are allowed unless Options.DenyLocal is set, so that the
// host's root can always repair a broken configuration.
//
// Every decision is written to an audit log as one JSON line; request bodies
// and query strings are never logged because they carry environment
// variables, build arguments and registry credentials. A TLS request whose
// decision cannot be logged is denied.
//
// dockerd fails closed on the plugin: while it is not serving, every API
// call (the unix socket included) is refused with a 500 after dockerd has
// retried the plugin socket for about 30 seconds. Recovery is to restart
// the plugin (systemctl restart dockca-authz); if it cannot start, root
// removes "authorization-plugins" from daemon.json and sends dockerd
// SIGHUP, which needs no API call. The same SIGHUP loads the plugin after
// `dockca authz install`.
//
// The plugin is shown a digest of each request, not the request: the last
// value of each header and the body only when dockerd chose to forward it.
// For every role but admin, a body dockerd would read but did not show is
// denied (requestGuards), and actions on existing containers are judged by
// how the container was created, looked up on dockerd's socket
// (ContainerLookup). builtin-policy.yaml lists every difference between the
// digest and what dockerd executes, and how each is closed.
//
// Known limits: build contexts, image loads and archive uploads are bodies
// the plugin is never shown, so they are admin-only; BuildKit's /session
// and /grpc endpoints are not in the operator role; a remote-mode CRL covers
// the certificates of the issuers it was configured with; a container is
// looked up by name when it is judged and dockerd resolves the name again
// when it acts (an admin who renames containers in between can make the
// two differ).
package authz

package pki

// The Docker file layout: the names of the files dockca writes. The client
// layout is what the docker CLI reads from DOCKER_CERT_PATH (and from a
// context's TLS store); the daemon layout is the one Docker's documentation
// uses for dockerd, and the gate's.
const (
	FileCA         = "ca.pem"
	FileClientCert = "cert.pem"
	FileClientKey  = "key.pem"
	FileServerCert = "server-cert.pem"
	FileServerKey  = "server-key.pem"
	FileDaemonJSON = "daemon.json"
)

// CertFiles returns the certificate and key file names for a certificate
// of kind: server-cert.pem and server-key.pem for daemons (and the
// service), cert.pem and key.pem for clients.
func CertFiles(kind Kind) (cert, key string) {
	if kind == KindClient {
		return FileClientCert, FileClientKey
	}
	return FileServerCert, FileServerKey
}

// DaemonTLSConfig is the TLS part of dockerd's daemon.json.
type DaemonTLSConfig struct {
	TLSVerify bool   `json:"tlsverify"`
	TLSCACert string `json:"tlscacert"`
	TLSCert   string `json:"tlscert"`
	TLSKey    string `json:"tlskey"`
}

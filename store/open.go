package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dockca/dockca/store/etcdkv"
	"github.com/dockca/dockca/store/kv"
)

// Where a store is: `bolt:PATH` (a bbolt file, the default being
// <home>/dockca.db) or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (every key
// under PREFIX in an etcd cluster, reached over TLS when EtcdTLS names
// files).

// ErrBadURL means a store URL that cannot be used.
var ErrBadURL = errors.New("bad store URL")

// EtcdTLS names the files of etcd's own TLS: the CA that signed the
// cluster's certificates and, for client-certificate authentication, a
// certificate and key. All empty: plain HTTP to etcd (loopback or a
// private network only).
type EtcdTLS struct {
	CACert, Cert, Key string
}

func (t EtcdTLS) enabled() bool { return t.CACert != "" || t.Cert != "" || t.Key != "" }

// Config says where the store is.
type Config struct {
	// URL is bolt:PATH or etcd://…; empty means bolt:<home>/dockca.db.
	URL  string
	Etcd EtcdTLS
}

// Location is a parsed store URL.
type Location struct {
	Bolt      string   // the file, for bolt:
	Endpoints []string // HOST:PORT, for etcd://
	Prefix    string   // for etcd://, ending in "/"
}

// IsEtcd reports whether the location is an etcd cluster.
func (l Location) IsEtcd() bool { return len(l.Endpoints) > 0 }

// String renders the location as a URL (no credentials are ever in it).
func (l Location) String() string {
	if l.IsEtcd() {
		return "etcd://" + strings.Join(l.Endpoints, ",") + "/" + strings.TrimSuffix(l.Prefix, "/")
	}
	return "bolt:" + l.Bolt
}

// ParseURL reads a store URL.
func ParseURL(raw string) (Location, error) {
	switch {
	case strings.HasPrefix(raw, "bolt:"):
		p := strings.TrimPrefix(raw, "bolt:")
		p = strings.TrimPrefix(p, "//")
		if p == "" {
			return Location{}, fmt.Errorf("%w %q: bolt: needs a file path (bolt:/var/lib/dockca/dockca.db)", ErrBadURL, raw)
		}
		return Location{Bolt: filepath.Clean(p)}, nil
	case strings.HasPrefix(raw, "etcd://"):
		rest := strings.TrimPrefix(raw, "etcd://")
		hosts, prefix, ok := strings.Cut(rest, "/")
		prefix = strings.Trim(prefix, "/")
		if !ok || prefix == "" {
			return Location{}, fmt.Errorf("%w %q: etcd:// needs a key prefix after the hosts (etcd://127.0.0.1:2379/dockca)", ErrBadURL, raw)
		}
		if strings.ContainsAny(prefix, "\x00\x01\x02") {
			return Location{}, fmt.Errorf("%w %q: the prefix may not contain control characters", ErrBadURL, raw)
		}
		var eps []string
		seen := map[string]bool{}
		for _, h := range strings.Split(hosts, ",") {
			host, port, err := net.SplitHostPort(h)
			if err != nil || host == "" || port == "" {
				return Location{}, fmt.Errorf("%w %q: %q is not HOST:PORT", ErrBadURL, raw, h)
			}
			if seen[h] {
				return Location{}, fmt.Errorf("%w %q: %q is listed twice", ErrBadURL, raw, h)
			}
			seen[h] = true
			eps = append(eps, h)
		}
		return Location{Endpoints: eps, Prefix: prefix + "/"}, nil
	}
	return Location{}, fmt.Errorf("%w %q: use bolt:PATH or etcd://HOST:PORT[,HOST:PORT...]/PREFIX", ErrBadURL, raw)
}

// ForHome returns c, with the default bbolt file of home when no URL is
// set.
func (c Config) ForHome(home string) Config {
	if c.URL == "" {
		c.URL = "bolt:" + Path(home)
	}
	return c
}

// Location parses c's URL.
func (c Config) Location() (Location, error) { return ParseURL(c.URL) }

// IsEtcd reports whether c names an etcd store.
func (c Config) IsEtcd() bool { return strings.HasPrefix(c.URL, "etcd://") }

// Exists reports whether the store holds a CA (a bbolt file exists; an
// etcd prefix has the schema marker). An unreachable etcd is an error.
func (c Config) Exists(ctx context.Context) (bool, error) {
	loc, err := c.Location()
	if err != nil {
		return false, err
	}
	if !loc.IsEtcd() {
		_, err := os.Stat(loc.Bolt)
		return err == nil, nil
	}
	cli, err := c.etcdClient(loc)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, loc.Prefix+string(bucketMeta)+"\x00"+string(keySchema))
	if err != nil {
		return false, fmt.Errorf("etcd at %s did not answer within 5 s (%v): %w", loc, err, kv.ErrUnavailable)
	}
	return len(resp.Kvs) > 0, nil
}

// OpenConfig opens the store c names (a bbolt file as Open does; an
// etcd prefix, checking the schema marker and creating it when the prefix
// is empty and o is not read-only).
func OpenConfig(ctx context.Context, c Config, o *Options) (*Store, error) {
	loc, err := c.Location()
	if err != nil {
		return nil, err
	}
	if !loc.IsEtcd() {
		return Open(loc.Bolt, o)
	}
	if o == nil {
		o = &Options{}
	}
	cli, err := c.etcdClient(loc)
	if err != nil {
		return nil, err
	}
	s := &Store{kv: etcdkv.New(cli, loc.Prefix, loc.String(), o.ReadOnly, true), path: loc.String()}
	if err := s.reachable(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if o.forCopy {
		return s, nil
	}
	if err := s.prepare(o.ReadOnly); err != nil {
		s.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("open %s: %w", loc, err)
	}
	if !o.ReadOnly {
		if err := s.ensureIndexes(); err != nil {
			s.Close()
			return nil, fmt.Errorf("open %s: %w", loc, err)
		}
	}
	return s, nil
}

// OpenForCopy opens the store c names to receive a copy (CopyTo): it may
// be empty or hold an interrupted copy, and is not prepared.
func OpenForCopy(ctx context.Context, c Config) (*Store, error) {
	loc, err := c.Location()
	if err != nil {
		return nil, err
	}
	if !loc.IsEtcd() {
		return openForCopy(loc.Bolt)
	}
	return OpenConfig(ctx, c, &Options{forCopy: true})
}

func openForCopy(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := precheckFile(path); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, classifyOpenError(path, err))
	}
	bb := newBoltBackend(db, path)
	return &Store{kv: bb, bolt: bb, path: path}, nil
}

func (s *Store) reachable(ctx context.Context) error {
	b, ok := s.kv.(*etcdkv.Backend)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.Revision(ctx); err != nil {
		return fmt.Errorf("etcd at %s did not answer within 5 s (%v): %w", s.path, err, kv.ErrUnavailable)
	}
	return nil
}

func (c Config) etcdClient(loc Location) (*clientv3.Client, error) {
	scheme := "http://"
	var tlsCfg *tls.Config
	if c.Etcd.enabled() {
		scheme = "https://"
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.Etcd.CACert != "" {
			pem, err := os.ReadFile(c.Etcd.CACert)
			if err != nil {
				return nil, fmt.Errorf("read etcd CA certificate: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("read etcd CA certificate %q: no PEM certificate in it", c.Etcd.CACert)
			}
			tlsCfg.RootCAs = pool
		}
		if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
			return nil, errors.New("--etcd-cert and --etcd-key go together")
		}
		if c.Etcd.Cert != "" {
			pair, err := tls.LoadX509KeyPair(c.Etcd.Cert, c.Etcd.Key)
			if err != nil {
				return nil, fmt.Errorf("read etcd client certificate: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	eps := make([]string, len(loc.Endpoints))
	for i, e := range loc.Endpoints {
		eps[i] = scheme + e
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		// A dead member is left quickly for a live one.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", loc, err)
	}
	return cli, nil
}

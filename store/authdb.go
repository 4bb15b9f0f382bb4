package store

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store/kv"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql/database"
)

var keyCRL = []byte("crl")

// AuthDB adapts the store to smallstep's persistence interfaces
// (db.AuthDB, db.CertificateRevocationListDB), so that the embedded
// authority's revocations (ca.Authority.Revoke goes through smallstep's)
// land in dockca's own records. dockca signs every leaf itself and records
// it with PutCertificate, its provenance as typed fields (ca.Provenance);
// the adapter implements no certificate storer, so nothing reaches the
// store through smallstep's signing path.
type AuthDB struct {
	s *Store
}

// AuthDB returns the adapter for the embedded authority.
func (s *Store) AuthDB() *AuthDB {
	return &AuthDB{s: s}
}

var (
	_ db.AuthDB                      = (*AuthDB)(nil)
	_ db.CertificateRevocationListDB = (*AuthDB)(nil)
)

// smallstep passes serials as decimal strings.
func decimalSerial(sn string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(sn, 10)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("%q is not a serial number", sn)
	}
	return n, nil
}

// IsRevoked implements db.AuthDB.
func (a *AuthDB) IsRevoked(sn string) (bool, error) {
	n, err := decimalSerial(sn)
	if err != nil {
		return false, err
	}
	rev, err := a.s.Revocation(context.Background(), n)
	return rev != nil, err
}

// Revoke implements db.AuthDB; a second revocation of a serial returns
// db.ErrAlreadyExists as smallstep expects.
func (a *AuthDB) Revoke(rci *db.RevokedCertificateInfo) error {
	n, err := decimalSerial(rci.Serial)
	if err != nil {
		return err
	}
	err = a.s.Revoke(context.Background(), n, &Revocation{
		ReasonCode: rci.ReasonCode, Reason: rci.Reason, RevokedAt: rci.RevokedAt.UTC(),
		ExpiresAt: rci.ExpiresAt, ProvisionerID: rci.ProvisionerID, TokenID: rci.TokenID, MTLS: rci.MTLS,
	})
	if errors.Is(err, ErrAlreadyRevoked) {
		return db.ErrAlreadyExists
	}
	return err
}

// GetCertificate implements db.AuthDB.
func (a *AuthDB) GetCertificate(sn string) (*x509.Certificate, error) {
	n, err := decimalSerial(sn)
	if err != nil {
		return nil, err
	}
	c, err := a.s.Certificate(context.Background(), n)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(c.DER)
}

// UseToken implements db.AuthDB: it returns true the first time a token ID
// is seen and false ever after. Only a hash of the token is kept, so the
// database never holds a usable credential.
func (a *AuthDB) UseToken(id, tok string) (bool, error) {
	sum := sha256.Sum256([]byte(tok))
	err := a.s.MarkTokenUsed(context.Background(), id, hex.EncodeToString(sum[:]))
	switch {
	case errors.Is(err, ErrTokenUsed):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// GetRevokedCertificates implements db.CertificateRevocationListDB.
func (a *AuthDB) GetRevokedCertificates() (*[]db.RevokedCertificateInfo, error) {
	revs, err := a.s.Revocations(context.Background())
	if err != nil {
		return nil, err
	}
	out := make([]db.RevokedCertificateInfo, 0, len(revs))
	for _, r := range revs {
		n, err := pki.ParseSerial(r.Serial)
		if err != nil {
			return nil, err
		}
		out = append(out, db.RevokedCertificateInfo{
			Serial: n.String(), ReasonCode: r.ReasonCode, Reason: r.Reason, RevokedAt: r.RevokedAt,
			ExpiresAt: r.ExpiresAt, ProvisionerID: r.ProvisionerID, TokenID: r.TokenID, MTLS: r.MTLS,
		})
	}
	return &out, nil
}

// GetCRL implements db.CertificateRevocationListDB; a missing CRL matches
// nosql's not-found error, which is what the authority checks for.
func (a *AuthDB) GetCRL() (*db.CertificateRevocationListInfo, error) {
	crl, err := a.s.CRL(context.Background())
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("no CRL stored yet: %w", database.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &db.CertificateRevocationListInfo{Number: crl.Number, ExpiresAt: crl.NextUpdate, Duration: crl.Duration, DER: crl.DER}, nil
}

// StoreCRL implements db.CertificateRevocationListDB.
func (a *AuthDB) StoreCRL(info *db.CertificateRevocationListInfo) error {
	return a.s.PutCRL(context.Background(), &CRL{
		Number: info.Number, NextUpdate: info.ExpiresAt, Duration: info.Duration, DER: info.DER, ThisUpdate: time.Now().UTC(),
	})
}

// The SSH half of smallstep's interface is not used by dockca: it refuses
// rather than pretends.

// IsSSHRevoked implements db.AuthDB.
func (a *AuthDB) IsSSHRevoked(string) (bool, error) { return false, db.ErrNotImplemented }

// RevokeSSH implements db.AuthDB.
func (a *AuthDB) RevokeSSH(*db.RevokedCertificateInfo) error { return db.ErrNotImplemented }

// IsSSHHost implements db.AuthDB.
func (a *AuthDB) IsSSHHost(string) (bool, error) { return false, db.ErrNotImplemented }

// GetSSHHostPrincipals implements db.AuthDB.
func (a *AuthDB) GetSSHHostPrincipals() ([]string, error) { return nil, db.ErrNotImplemented }

// Shutdown implements db.AuthDB. The store's owner closes the file; the
// authority shutting down must not pull it from under other users.
func (a *AuthDB) Shutdown() error { return nil }

// CRL is the current certificate revocation list.
type CRL struct {
	Number     int64         `json:"number"`
	ThisUpdate time.Time     `json:"this_update"`
	NextUpdate time.Time     `json:"next_update"`
	Duration   time.Duration `json:"duration"`
	DER        []byte        `json:"der"`
	// RevocationSeq is the revocation counter (Store.RevocationSeq) of the
	// snapshot the CRL was made from: it lists every revocation up to it.
	// Zero in CRLs made before the counter existed.
	RevocationSeq uint64 `json:"revocation_seq,omitempty"`
}

// CRL returns the stored CRL or an error matching ErrNotFound.
func (s *Store) CRL(ctx context.Context) (*CRL, error) {
	var crl CRL
	err := s.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketCRL).Get(keyCRL)
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &crl)
	})
	if err != nil {
		return nil, fmt.Errorf("read crl: %w", err)
	}
	return &crl, nil
}

// crlHeader reads a stored CRL without its DER, which with many
// revocations is megabytes of base64.
type crlHeader struct {
	Number        int64         `json:"number"`
	ThisUpdate    time.Time     `json:"this_update"`
	NextUpdate    time.Time     `json:"next_update"`
	Duration      time.Duration `json:"duration"`
	RevocationSeq uint64        `json:"revocation_seq,omitempty"`
}

// keyCRLHeader holds the stored CRL's header beside it, written in the
// same transaction, so that reading it costs nothing that grows with the
// CRL (json.Unmarshal scans all of its input, DER included).
var keyCRLHeader = []byte("crl_header")

func readCRLHeader(tx kv.Tx) (crlHeader, error) {
	var h crlHeader
	b := tx.Bucket(bucketCRL)
	v := b.Get(keyCRLHeader)
	if v == nil {
		// A CRL stored before the header existed.
		if v = b.Get(keyCRL); v == nil {
			return h, ErrNotFound
		}
	}
	return h, json.Unmarshal(v, &h)
}

// CRLHeader returns the stored CRL without its DER (number, times and
// revocation counter), or an error matching ErrNotFound when there is
// none: enough to decide whether it is current.
func (s *Store) CRLHeader(ctx context.Context) (*CRL, error) {
	var h crlHeader
	err := s.view(ctx, func(tx kv.Tx) error {
		var err error
		h, err = readCRLHeader(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read crl: %w", err)
	}
	return &CRL{Number: h.Number, ThisUpdate: h.ThisUpdate, NextUpdate: h.NextUpdate, Duration: h.Duration, RevocationSeq: h.RevocationSeq}, nil
}

// PutCRL replaces the stored CRL. A CRL whose number is not above the
// stored one is refused: CRL numbers only ever increase.
func (s *Store) PutCRL(ctx context.Context, crl *CRL) error {
	b, err := json.Marshal(crl)
	if err != nil {
		return fmt.Errorf("store crl: %w", err)
	}
	hb, err := json.Marshal(&crlHeader{Number: crl.Number, ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate,
		Duration: crl.Duration, RevocationSeq: crl.RevocationSeq})
	if err != nil {
		return fmt.Errorf("store crl: %w", err)
	}
	return s.update(ctx, func(tx kv.Tx) error {
		bucket := tx.Bucket(bucketCRL)
		if old, err := readCRLHeader(tx); err == nil && crl.Number <= old.Number && old.Number > 0 {
			return fmt.Errorf("store crl: number %d is not above the stored %d: %w", crl.Number, old.Number, ErrCRLNumber)
		}
		if err := bucket.Put(keyCRL, b); err != nil {
			return err
		}
		return bucket.Put(keyCRLHeader, hb)
	})
}

// ErrCRLNumber refuses a CRL whose number is not above the stored one's
// (another replica stored a newer CRL meanwhile).
var ErrCRLNumber = errors.New("a CRL with this number or a higher one is stored")

// UsedToken is the record of a one-time token that has been spent.
type UsedToken struct {
	ID     string    `json:"id"`
	SHA256 string    `json:"sha256"`
	UsedAt time.Time `json:"used_at"`
	// Serial is the certificate the token was spent on, when known.
	Serial string `json:"serial,omitempty"`
}

// MarkTokenUsed records a token ID as spent, or returns ErrTokenUsed.
func (s *Store) MarkTokenUsed(ctx context.Context, id, sha string) error {
	b, err := json.Marshal(&UsedToken{ID: id, SHA256: sha, UsedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx kv.Tx) error {
		bucket := tx.Bucket(bucketTokens)
		if bucket.Get([]byte(id)) != nil {
			return ErrTokenUsed
		}
		return bucket.Put([]byte(id), b)
	})
}

// TokenUsed reports whether a token ID has been spent.
func (s *Store) TokenUsed(ctx context.Context, id string) (*UsedToken, error) {
	var t *UsedToken
	err := s.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketTokens).Get([]byte(id))
		if v == nil {
			return nil
		}
		t = new(UsedToken)
		return json.Unmarshal(v, t)
	})
	return t, err
}

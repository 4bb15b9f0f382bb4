package ca

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// One-time enrollment tokens are JWTs signed by a JWK provisioner of the
// embedded smallstep authority, the way `step ca token` makes them: the
// standard claims (iss = provisioner name, aud = the CA's sign or revoke
// URL, sub = the name, sans, jti, nbf, exp) plus a "dockca" claim binding
// the token to a kind, a role and a certificate lifetime. smallstep checks
// signature, issuer, audience and validity; dockca checks the binding and
// spends the jti in the transaction that stores the certificate.

var (
	// ErrTokenUsed means the token was spent before.
	ErrTokenUsed = store.ErrTokenUsed
)

// TokenRequest asks for one token.
type TokenRequest struct {
	Kind string // client, daemon or revoke
	// Name is the client name, the daemon host, or the serial to revoke.
	Name    string
	Role    pki.Role
	SANs    []string
	CertTTL time.Duration
	// Groups are the daemon's groups or the client's scope.
	Groups []string
	// TTL of the token itself; 0 means pki.DefaultTokenTTL.
	TTL time.Duration
	// CAURL is the URL clients reach the service at; it sets the audience.
	CAURL string
	// CreatedBy is recorded with the token.
	CreatedBy string
	// Roles are the roles of the CA's stored policy, accepted beside the
	// built-in ones (pki.AnyRole for a check made without the CA).
	Roles []pki.Role
}

// TokenMinter holds the unlocked token key.
type TokenMinter struct {
	name string
	key  *jose.JSONWebKey
}

// EnsureTokenKey creates the token key pair on first use, its private half
// encrypted under the CA password like the CA keys (a JWE, as step stores
// provisioner keys). The password is checked against the intermediate key
// first, so a mistyped password can never lock the token key away.
func EnsureTokenKey(ctx context.Context, st *store.Store, password []byte) (*store.TokenProvisioner, error) {
	if p, err := st.TokenProvisioner(ctx); err == nil {
		return p, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	rec, err := st.CA(ctx)
	if err != nil {
		return nil, err
	}
	if !rec.Encrypted {
		password = nil
	}
	if _, err := DecryptKey(rec.IntermediateKey, password); err != nil {
		return nil, err
	}
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	pub := jwk.Public()
	pubJSON, err := json.Marshal(&pub)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	var priv []byte
	if len(password) > 0 {
		jwe, err := jose.EncryptJWK(jwk, password)
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		s, err := jwe.CompactSerialize()
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		priv = []byte(s)
	} else if priv, err = json.Marshal(jwk); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return st.EnsureTokenProvisioner(ctx, &store.TokenProvisioner{
		Name: pki.TokenIssuer, KeyID: jwk.KeyID, PublicJWK: pubJSON, PrivateJWK: priv,
		Encrypted: len(password) > 0, CreatedAt: time.Now().UTC(),
	})
}

// UnlockTokenKey decrypts the token key (creating it when there is none).
func UnlockTokenKey(ctx context.Context, st *store.Store, password []byte) (*TokenMinter, error) {
	p, err := EnsureTokenKey(ctx, st, password)
	if err != nil {
		return nil, err
	}
	data := p.PrivateJWK
	if p.Encrypted {
		if len(password) == 0 {
			return nil, fmt.Errorf("the token key is encrypted and no password was given: %w", ErrWrongPassword)
		}
		if data, err = jose.Decrypt(data, jose.WithPassword(password)); err != nil {
			return nil, ErrWrongPassword
		}
	}
	var key jose.JSONWebKey
	if err := json.Unmarshal(data, &key); err != nil {
		return nil, fmt.Errorf("decode token key: %w", err)
	}
	if key.IsPublic() || key.KeyID != p.KeyID {
		return nil, errors.New("decode token key: stored key does not match its public half")
	}
	return &TokenMinter{name: p.Name, key: &key}, nil
}

// configureTokens adds the token provisioner, when there is one, to the
// embedded authority's configuration. Tokens outlive service restarts, so
// smallstep's "issued before the authority started" check is off; expiry
// and the used-ID record are what bound a token.
func configureTokens(ctx context.Context, st *store.Store, cfg *config.Config) error {
	cfg.AuthorityConfig.DisableIssuedAtCheck = true
	p, err := st.TokenProvisioner(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var pub jose.JSONWebKey
	if err := json.Unmarshal(p.PublicJWK, &pub); err != nil {
		return fmt.Errorf("decode token key: %w", err)
	}
	cfg.AuthorityConfig.Provisioners = append(cfg.AuthorityConfig.Provisioners,
		&provisioner.JWK{Type: "JWK", Name: p.Name, Key: &pub})
	return nil
}

// CheckTokenRequest validates r and fills its defaults.
func CheckTokenRequest(r *TokenRequest) error {
	if r.TTL == 0 {
		r.TTL = pki.DefaultTokenTTL
	}
	if r.TTL < pki.MinTokenTTL || r.TTL > pki.MaxTokenTTL {
		return fmt.Errorf("token TTL %s must be between %s and %s: %w", pki.FormatTTL(r.TTL), pki.FormatTTL(pki.MinTokenTTL), pki.FormatTTL(pki.MaxTokenTTL), pki.ErrPolicy)
	}
	caURL, err := pki.NormalizeCAURL(r.CAURL)
	if err != nil {
		return err
	}
	r.CAURL = caURL
	if r.Kind == pki.TokenKindRevoke {
		n, err := pki.ParseSerial(r.Name)
		if err != nil {
			return fmt.Errorf("a revoke token names a serial: %v: %w", err, pki.ErrPolicy)
		}
		if r.Role != "" || len(r.SANs) > 0 || len(r.Groups) > 0 || r.CertTTL != 0 {
			return fmt.Errorf("a revoke token takes no role, SANs, groups or TTL: %w", pki.ErrPolicy)
		}
		r.Name = pki.FormatSerial(n)
		return nil
	}
	kind, err := pki.ParseKind(r.Kind)
	if err != nil {
		return err
	}
	n, err := check(Request{Kind: kind, Name: r.Name, Role: r.Role, SANs: r.SANs, Groups: r.Groups, TTL: r.CertTTL}, nil, r.Roles, time.Now())
	if err != nil {
		return err
	}
	r.Name, r.Role, r.Groups = n.Name, n.Role, n.Groups
	r.SANs = nil
	for _, s := range n.SANs {
		r.SANs = append(r.SANs, s.String())
	}
	return nil
}

// keyAudience is the audience every replica of the CA accepts: the CA's
// token key (whose signature the token must carry anyway) and the
// operation. The URL audience names one replica's address; replicas on one
// etcd store have several, and a token must work at whichever of them the
// client fails over to.
func keyAudience(kid, path string) string { return "urn:dockca:token-key:" + kid + path }

// Mint checks r, signs a token and returns it with the record to store.
func (m *TokenMinter) Mint(r TokenRequest, now time.Time) (string, *store.Token, error) {
	if err := CheckTokenRequest(&r); err != nil {
		return "", nil, err
	}
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", nil, fmt.Errorf("token id: %w", err)
	}
	id := hex.EncodeToString(idb[:])
	path := "/1.0/sign"
	if r.Kind == pki.TokenKindRevoke {
		path = "/1.0/revoke"
	}
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(r.TTL)
	claims := pki.TokenClaims{
		Claims: jose.Claims{
			ID: id, Issuer: m.name, Subject: r.Name, Audience: jose.Audience{r.CAURL + path, keyAudience(m.key.KeyID, path)},
			NotBefore: jose.NewNumericDate(now), IssuedAt: jose.NewNumericDate(now), Expiry: jose.NewNumericDate(exp),
		},
		SANs:   r.SANs,
		Dockca: pki.DockcaClaims{Kind: r.Kind, Role: r.Role, TTL: int64(r.CertTTL / time.Second), Groups: r.Groups},
	}
	so := new(jose.SignerOptions).WithType("JWT").WithHeader("kid", m.key.KeyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(m.key.Algorithm), Key: m.key.Key}, so)
	if err != nil {
		return "", nil, fmt.Errorf("token signer: %w", err)
	}
	tok, err := jose.Signed(signer).Claims(claims).CompactSerialize()
	if err != nil {
		return "", nil, fmt.Errorf("sign token: %w", err)
	}
	rec := &store.Token{ID: id, Kind: r.Kind, Name: r.Name, Role: r.Role, SANs: r.SANs, Groups: r.Groups, CertTTL: r.CertTTL,
		CreatedAt: now, ExpiresAt: exp, CreatedBy: r.CreatedBy}
	return tok, rec, nil
}

// CreateToken mints a token and records it; the token is only returned
// once its record is stored.
func CreateToken(ctx context.Context, st *store.Store, m *TokenMinter, r TokenRequest) (string, *store.Token, error) {
	toks, recs, err := CreateTokens(ctx, st, m, []TokenRequest{r})
	if err != nil {
		return "", nil, err
	}
	return toks[0], recs[0], nil
}

// CreateTokens mints a token for each request and records them all in one
// transaction: every token is returned, or none is valid. A request the
// policy refuses fails the whole set, naming it. Roles of the stored
// policy are accepted.
func CreateTokens(ctx context.Context, st *store.Store, m *TokenMinter, rs []TokenRequest) ([]string, []*store.Token, error) {
	roles, err := PolicyRoles(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	toks := make([]string, len(rs))
	recs := make([]*store.Token, len(rs))
	for i, r := range rs {
		r.Roles = roles
		if toks[i], recs[i], err = m.Mint(r, now); err != nil {
			if len(rs) > 1 {
				return nil, nil, fmt.Errorf("token for %q: %w", r.Name, err)
			}
			return nil, nil, err
		}
	}
	if err := st.PutTokens(ctx, recs); err != nil {
		return nil, nil, err
	}
	return toks, recs, nil
}

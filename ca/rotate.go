package ca

// Rotation replaces the CA's keys without an outage. dockca keeps every
// earlier root and intermediate (a generation) in the CA record, keys
// encrypted under the CA password like the current ones:
//
//   - rotate intermediate: a new intermediate under the same root. New
//     leaves are signed by it; the old one stays a valid issuer (under the
//     same root nothing else changes for verifiers) until its last leaf
//     expires, and its CRL is still served.
//   - rotate root: a new root R2 and intermediate I2, and I2x, the same
//     subject and key as I2 but signed by the old root R1. New leaves carry
//     the chain I2, I2x, so a peer that trusts only R1 builds leaf→I2x→R1
//     and one that trusts R2 builds leaf→I2→R2 (Go and OpenSSL both build
//     paths from what the peer presents). Every trust bundle carries R1
//     and R2 during the overlap, so renewed peers also accept leaves that
//     are still under R1.
//   - rotate finish: R1 is no longer trusted; bundles carry R2 only and
//     leaves under R1 are refused.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// Errors of rotation that callers branch on.
var (
	// ErrRotationInProgress refuses a rotation while a root overlap runs.
	ErrRotationInProgress = errors.New("a root rotation is in progress")
	// ErrNoRotation means there is no old root to retire.
	ErrNoRotation = errors.New("no root rotation is in progress")
	// ErrStillInUse refuses rotate finish while certificates depend on
	// the old root.
	ErrStillInUse = errors.New("certificates still depend on the old root")
)

// DefaultOverlap is how long a root rotation is planned to overlap.
const DefaultOverlap = 30 * 24 * time.Hour

// Trust is what the CA's generations mean to verifiers and to the files
// dockca writes.
type Trust struct {
	// Root and Intermediate are the current generation.
	Root, Intermediate *x509.Certificate
	// Roots are the trusted roots, current first: the current root and,
	// during a root overlap, the old one. Every ca.pem carries them.
	Roots []*x509.Certificate
	// Chain is what follows a new leaf in cert.pem: the current
	// intermediate, then its twin cross-signed by the old root during a
	// root overlap.
	Chain []*x509.Certificate
	// Issuers are the intermediates whose leaves may still be valid and
	// that chain to a trusted root, current first, cross-signed twins
	// included.
	Issuers []*x509.Certificate
}

// TrustOf reads the generations of a CA record.
func TrustOf(rec *store.CA) (*Trust, error) {
	parse := func(what string, der []byte) (*x509.Certificate, error) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", what, err)
		}
		return c, nil
	}
	t := &Trust{}
	var err error
	if t.Root, err = parse("root", rec.RootDER); err != nil {
		return nil, err
	}
	if t.Intermediate, err = parse("intermediate", rec.IntermediateDER); err != nil {
		return nil, err
	}
	t.Roots = []*x509.Certificate{t.Root}
	t.Chain = []*x509.Certificate{t.Intermediate}
	t.Issuers = []*x509.Certificate{t.Intermediate}
	if len(rec.CrossDER) > 0 {
		cross, err := parse("cross-signed intermediate", rec.CrossDER)
		if err != nil {
			return nil, err
		}
		t.Chain = append(t.Chain, cross)
		t.Issuers = append(t.Issuers, cross)
	}
	for i := len(rec.Previous) - 1; i >= 0; i-- {
		g := rec.Previous[i]
		what := "generation " + strconv.Itoa(g.Generation)
		root, err := parse(what+" root", g.RootDER)
		if err != nil {
			return nil, err
		}
		inter, err := parse(what+" intermediate", g.IntermediateDER)
		if err != nil {
			return nil, err
		}
		issuers := []*x509.Certificate{inter}
		if len(g.CrossDER) > 0 {
			cross, err := parse(what+" cross-signed intermediate", g.CrossDER)
			if err != nil {
				return nil, err
			}
			issuers = append(issuers, cross)
		}
		if !g.RetiredAt.IsZero() {
			continue // rotate finish: its leaves are refused
		}
		if !containsCert(t.Roots, root) {
			t.Roots = append(t.Roots, root)
		}
		t.Issuers = append(t.Issuers, issuers...)
	}
	return t, nil
}

// LoadTrust reads the CA record and its generations without unlocking any
// key.
func LoadTrust(ctx context.Context, st *store.Store) (*store.CA, *Trust, error) {
	rec, err := st.CA(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, err := TrustOf(rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, t, nil
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// RootsPEM is the trust bundle every ca.pem carries: the trusted roots,
// current first.
func (t *Trust) RootsPEM() []byte { return pki.PEMChain(t.Roots...) }

// Overlapping reports whether an old root is still trusted beside the
// current one.
func (t *Trust) Overlapping() bool { return len(t.Roots) > 1 }

// Verify checks that leaf chains, through a live issuer, to a trusted root
// for usage at now.
func (t *Trust) Verify(leaf *x509.Certificate, usage x509.ExtKeyUsage, now time.Time) error {
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range t.Roots {
		roots.AddCert(r)
	}
	for _, i := range t.Issuers {
		inters.AddCert(i)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now})
	return err
}

// generationNames are the subjects' common names of generation n: the
// first keeps init's names, later ones are numbered.
func generationNames(name string, n int) (root, inter string) {
	root, inter = name+" Root CA", name+" Intermediate CA"
	if n > 1 {
		root += " " + strconv.Itoa(n)
		inter += " " + strconv.Itoa(n)
	}
	return root, inter
}

func generationOf(rec *store.CA) int {
	if rec.Generation < 1 {
		return 1
	}
	return rec.Generation
}

// RotateOptions configure RotateIntermediate and RotateRoot.
type RotateOptions struct {
	// KeyType of the new keys (default: the CA's).
	KeyType pki.KeyType
	// TTL of the new intermediate (default DefaultIntermediateTTL, never
	// beyond its root).
	TTL time.Duration
	// RootTTL of a new root (default DefaultRootTTL).
	RootTTL time.Duration
	// Overlap is how long a root rotation is planned to last (default
	// DefaultOverlap); informational: rotate finish ends it.
	Overlap time.Duration
	// Password decrypts the signing keys and encrypts the new ones (empty
	// for a CA created with --no-password).
	Password []byte
	// Now is the clock (tests).
	Now time.Time
}

func (o *RotateOptions) defaults(rec *store.CA) error {
	if o.KeyType == "" {
		o.KeyType = pki.KeyType(rec.KeyType)
	}
	if _, err := pki.ParseKeyType(string(o.KeyType)); err != nil {
		return err
	}
	if o.TTL == 0 {
		o.TTL = DefaultIntermediateTTL
	}
	if o.RootTTL == 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.Overlap == 0 {
		o.Overlap = DefaultOverlap
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	o.Now = o.Now.UTC()
	switch {
	case o.TTL < 24*time.Hour:
		return fmt.Errorf("intermediate TTL %s is shorter than a day: %w", o.TTL, pki.ErrPolicy)
	case o.Overlap < 0:
		return fmt.Errorf("overlap %s is negative: %w", o.Overlap, pki.ErrPolicy)
	}
	return nil
}

// RotationResult says what a rotation made.
type RotationResult struct {
	Generation   int               `json:"generation"`
	Root         *x509.Certificate `json:"-"`
	Intermediate *x509.Certificate `json:"-"`
	Cross        *x509.Certificate `json:"-"`
	OverlapUntil time.Time         `json:"overlap_until,omitempty"`
}

// begin checks that a rotation may start on rec (not during a root
// overlap) and unlocks the current root's key; n is the new generation.
func (o *RotateOptions) begin(rec *store.CA) (t *Trust, rootKey crypto.Signer, n int, err error) {
	if err := o.defaults(rec); err != nil {
		return nil, nil, 0, err
	}
	if t, err = TrustOf(rec); err != nil {
		return nil, nil, 0, err
	}
	if t.Overlapping() {
		return nil, nil, 0, fmt.Errorf("%w (until rotate finish): %w", ErrRotationInProgress, pki.ErrPolicy)
	}
	if rootKey, err = unlock(rec, rec.RootKeyPEM, o.Password); err != nil {
		return nil, nil, 0, fmt.Errorf("unlock root key: %w", err)
	}
	return t, rootKey, generationOf(rec) + 1, nil
}

// retire appends rec's current generation to its previous ones.
func retire(rec *store.CA, now time.Time) {
	rec.Previous = append(rec.Previous, store.Generation{
		Generation: generationOf(rec), KeyType: rec.KeyType, RootDER: rec.RootDER, RootKeyPEM: rec.RootKeyPEM,
		IntermediateDER: rec.IntermediateDER, IntermediateKey: rec.IntermediateKey, CrossDER: rec.CrossDER, ReplacedAt: now,
	})
}

// unlock decrypts a stored key with the CA password.
func unlock(rec *store.CA, pemKey, password []byte) (crypto.Signer, error) {
	if !rec.Encrypted {
		password = nil
	}
	return DecryptKey(pemKey, password)
}

func encryptFor(rec *store.CA, key crypto.Signer, password []byte) ([]byte, error) {
	if !rec.Encrypted {
		password = nil
	} else if len(password) == 0 {
		return nil, fmt.Errorf("the CA keys are encrypted and no password was given: %w", ErrWrongPassword)
	}
	return EncryptKey(key, password)
}

// RotateIntermediate makes a new intermediate under the current root; the
// current one joins the previous generations and keeps verifying. Refused
// during a root overlap (finish it first).
func RotateIntermediate(ctx context.Context, st *store.Store, o RotateOptions) (*RotationResult, error) {
	var res *RotationResult
	err := st.UpdateCA(ctx, func(rec *store.CA) error {
		t, rootKey, n, err := o.begin(rec)
		if err != nil {
			return err
		}
		_, interName := generationNames(rec.Name, n)
		interKey, err := pki.GenerateKey(o.KeyType)
		if err != nil {
			return fmt.Errorf("intermediate key: %w", err)
		}
		notAfter := o.Now.Add(o.TTL)
		if notAfter.After(t.Root.NotAfter) {
			return fmt.Errorf("intermediate TTL %s outlives the root, which expires %s: %w", o.TTL, t.Root.NotAfter.UTC().Format(time.RFC3339), pki.ErrPolicy)
		}
		inter, err := createCACert(caCertSpec{
			cn: interName, org: rec.Name, notBefore: o.Now.Add(-clockSkew), notAfter: notAfter,
			pub: interKey.Public(), signer: rootKey, parent: t.Root, maxPathLen: 0,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return fmt.Errorf("intermediate certificate: %w", err)
		}
		interPEM, err := encryptFor(rec, interKey, o.Password)
		if err != nil {
			return err
		}
		retire(rec, o.Now)
		rec.Generation, rec.IntermediateDER, rec.IntermediateKey, rec.CrossDER = n, inter.Raw, interPEM, nil
		res = &RotationResult{Generation: n, Root: t.Root, Intermediate: inter}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate intermediate: %w", err)
	}
	return res, nil
}

// RotateRoot makes a new root and intermediate, and the intermediate's twin
// cross-signed by the current root; the current generation joins the
// previous ones and its root stays trusted until FinishRotation.
func RotateRoot(ctx context.Context, st *store.Store, o RotateOptions) (*RotationResult, error) {
	var res *RotationResult
	err := st.UpdateCA(ctx, func(rec *store.CA) error {
		t, oldRootKey, n, err := o.begin(rec)
		if err != nil {
			return err
		}
		if o.TTL > o.RootTTL {
			return fmt.Errorf("intermediate TTL %s outlives the root TTL %s: %w", o.TTL, o.RootTTL, pki.ErrPolicy)
		}
		rootName, interName := generationNames(rec.Name, n)
		rootKey, err := pki.GenerateKey(o.KeyType)
		if err != nil {
			return fmt.Errorf("root key: %w", err)
		}
		interKey, err := pki.GenerateKey(o.KeyType)
		if err != nil {
			return fmt.Errorf("intermediate key: %w", err)
		}
		nb := o.Now.Add(-clockSkew)
		root, err := createCACert(caCertSpec{cn: rootName, org: rec.Name, notBefore: nb, notAfter: o.Now.Add(o.RootTTL),
			pub: rootKey.Public(), signer: rootKey, maxPathLen: 1})
		if err != nil {
			return fmt.Errorf("root certificate: %w", err)
		}
		spec := caCertSpec{cn: interName, org: rec.Name, notBefore: nb, notAfter: o.Now.Add(o.TTL),
			pub: interKey.Public(), signer: rootKey, parent: root, maxPathLen: 0,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		inter, err := createCACert(spec)
		if err != nil {
			return fmt.Errorf("intermediate certificate: %w", err)
		}
		// The twin: the same subject and key, vouched for by the old
		// root, for peers that trust only it. It cannot outlive it.
		cspec := spec
		cspec.signer, cspec.parent = oldRootKey, t.Root
		if cspec.notAfter.After(t.Root.NotAfter) {
			cspec.notAfter = t.Root.NotAfter
		}
		cross, err := createCACert(cspec)
		if err != nil {
			return fmt.Errorf("cross-signed intermediate: %w", err)
		}
		rootPEM, err := encryptFor(rec, rootKey, o.Password)
		if err != nil {
			return err
		}
		interPEM, err := encryptFor(rec, interKey, o.Password)
		if err != nil {
			return err
		}
		retire(rec, o.Now)
		rec.Generation, rec.KeyType = n, string(o.KeyType)
		rec.RootDER, rec.RootKeyPEM, rec.RootFingerprint = root.Raw, rootPEM, pki.Fingerprint(root)
		rec.IntermediateDER, rec.IntermediateKey, rec.CrossDER = inter.Raw, interPEM, cross.Raw
		rec.OverlapUntil = o.Now.Add(o.Overlap)
		res = &RotationResult{Generation: n, Root: root, Intermediate: inter, Cross: cross, OverlapUntil: rec.OverlapUntil}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate root: %w", err)
	}
	return res, nil
}

// Dependent is a certificate that still depends on an old generation.
type Dependent struct {
	Serial     string    `json:"serial"`
	Kind       pki.Kind  `json:"kind"`
	Name       string    `json:"name"`
	NotAfter   time.Time `json:"not_after"`
	Generation int       `json:"generation"`
	// OldRoot is true when the certificate chains to a root that a
	// finished rotation would retire (not only to an old intermediate).
	OldRoot bool `json:"old_root"`
	// Holder is where it went, where dockca knows it (the context or
	// folder its enrollment named, and the address it came from).
	Holder string `json:"holder,omitempty"`
}

// RotationStatus is what still depends on old generations.
type RotationStatus struct {
	Generation   int         `json:"generation"`
	Root         string      `json:"root_sha256"`
	OldRoots     []string    `json:"old_roots_sha256"`
	OverlapUntil *time.Time  `json:"overlap_until,omitempty"`
	Dependents   []Dependent `json:"dependents"`
}

// Status lists the valid certificates (unexpired, unrevoked, not replaced
// by a renewal) issued by an earlier, still trusted generation. dockca's
// own service certificate is left out: the service issues a new one at
// every start and renews it as it runs.
func Status(ctx context.Context, st *store.Store, now time.Time) (*RotationStatus, error) {
	rec, t, err := LoadTrust(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("rotate status: %w", err)
	}
	out := &RotationStatus{Generation: generationOf(rec), Root: pki.Fingerprint(t.Root), Dependents: []Dependent{}, OldRoots: []string{}}
	for _, r := range t.Roots[1:] {
		out.OldRoots = append(out.OldRoots, pki.Fingerprint(r))
	}
	if t.Overlapping() && !rec.OverlapUntil.IsZero() {
		u := rec.OverlapUntil.UTC()
		out.OverlapUntil = &u
	}
	type gen struct {
		n       int
		issuers []*x509.Certificate
		oldRoot bool
	}
	var gens []gen
	for _, g := range rec.Previous {
		if !g.RetiredAt.IsZero() {
			continue
		}
		inter, err := x509.ParseCertificate(g.IntermediateDER)
		if err != nil {
			return nil, fmt.Errorf("rotate status: %w", err)
		}
		gens = append(gens, gen{n: g.Generation, issuers: []*x509.Certificate{inter}, oldRoot: !bytes.Equal(g.RootDER, rec.RootDER)})
	}
	if len(gens) == 0 {
		return out, nil
	}
	certs, err := st.List(ctx, store.Filter{Status: store.StatusValid, Now: now})
	if err != nil {
		return nil, fmt.Errorf("rotate status: %w", err)
	}
	for _, c := range certs {
		if c.Kind == pki.KindService {
			continue
		}
		leaf, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, fmt.Errorf("rotate status: certificate %s: %w", c.Serial, err)
		}
		for _, g := range gens {
			if issuedBy(leaf, g.issuers) {
				out.Dependents = append(out.Dependents, Dependent{Serial: c.Serial, Kind: c.Kind, Name: c.Name,
					NotAfter: c.NotAfter.UTC(), Generation: g.n, OldRoot: g.oldRoot, Holder: c.Holder})
				break
			}
		}
	}
	sort.SliceStable(out.Dependents, func(i, j int) bool {
		a, b := out.Dependents[i], out.Dependents[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out, nil
}

// issuedBy reports a stored leaf signed by one of issuers: by its
// authority key identifier, which every dockca leaf carries (the records
// are the CA's own), else by its signature.
func issuedBy(leaf *x509.Certificate, issuers []*x509.Certificate) bool {
	for _, i := range issuers {
		if len(leaf.AuthorityKeyId) > 0 && len(i.SubjectKeyId) > 0 {
			if bytes.Equal(leaf.AuthorityKeyId, i.SubjectKeyId) {
				return true
			}
			continue
		}
		if leaf.CheckSignatureFrom(i) == nil {
			return true
		}
	}
	return false
}

// StillInUseError lists what keeps rotate finish from retiring the old
// root.
type StillInUseError struct{ Dependents []Dependent }

func (e *StillInUseError) Error() string {
	var b bytes.Buffer
	for i, d := range e.Dependents {
		if i == 8 {
			fmt.Fprintf(&b, ", and %d more", len(e.Dependents)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %q (%s, expires %s)", d.Kind, d.Name, d.Serial, d.NotAfter.Format(time.RFC3339))
	}
	return fmt.Sprintf("%d certificates still depend on the old root: %s (renew them, or --force)", len(e.Dependents), b.String())
}

func (e *StillInUseError) Unwrap() error { return ErrStillInUse }

// FinishRotation retires the old root: bundles carry the current root only
// and leaves under the old one are refused. Refused with a
// *StillInUseError while valid certificates chain to it, unless force.
func FinishRotation(ctx context.Context, st *store.Store, force bool, now time.Time) (*RotationStatus, error) {
	stat, err := Status(ctx, st, now)
	if err != nil {
		return nil, err
	}
	if len(stat.OldRoots) == 0 {
		return nil, fmt.Errorf("rotate finish: %w", ErrNoRotation)
	}
	var blocking []Dependent
	for _, d := range stat.Dependents {
		if d.OldRoot {
			blocking = append(blocking, d)
		}
	}
	if len(blocking) > 0 && !force {
		return nil, fmt.Errorf("rotate finish: %w", &StillInUseError{Dependents: blocking})
	}
	err = st.UpdateCA(ctx, func(rec *store.CA) error {
		if !bytes.Equal(rec.RootDER, mustRootDER(stat, rec)) {
			return errors.New("the CA changed meanwhile; run it again")
		}
		for i := range rec.Previous {
			g := &rec.Previous[i]
			if g.RetiredAt.IsZero() && !bytes.Equal(g.RootDER, rec.RootDER) {
				g.RetiredAt = now.UTC()
			}
		}
		rec.CrossDER, rec.OverlapUntil = nil, time.Time{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotate finish: %w", err)
	}
	return stat, nil
}

// mustRootDER returns the current root's DER when it is still the one stat
// was computed for, else nil.
func mustRootDER(stat *RotationStatus, rec *store.CA) []byte {
	if rec.RootFingerprint == stat.Root {
		return rec.RootDER
	}
	return nil
}

// allGenerations pools the roots and intermediates of every generation,
// retired ones included: what `dockca check` chains certificates to.
func allGenerations(rec *store.CA) (roots, inters *x509.CertPool, err error) {
	roots, inters = x509.NewCertPool(), x509.NewCertPool()
	add := func(pool *x509.CertPool, what string, der []byte) {
		if len(der) == 0 {
			return
		}
		c, perr := x509.ParseCertificate(der)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("parse %s: %w", what, perr))
			return
		}
		pool.AddCert(c)
	}
	add(roots, "root", rec.RootDER)
	add(inters, "intermediate", rec.IntermediateDER)
	add(inters, "cross-signed intermediate", rec.CrossDER)
	for _, g := range rec.Previous {
		what := "generation " + strconv.Itoa(g.Generation)
		add(roots, what+" root", g.RootDER)
		add(inters, what+" intermediate", g.IntermediateDER)
		add(inters, what+" cross-signed intermediate", g.CrossDER)
	}
	return roots, inters, err
}

// checkGenerationKeys reports earlier generations' keys that do not
// decrypt with the password or do not match their certificates.
func checkGenerationKeys(rec *store.CA, password []byte) []store.Problem {
	var out []store.Problem
	for _, g := range rec.Previous {
		root, err1 := x509.ParseCertificate(g.RootDER)
		inter, err2 := x509.ParseCertificate(g.IntermediateDER)
		if err := errors.Join(err1, err2); err != nil {
			out = append(out, store.Problem{Where: fmt.Sprintf("generation %d", g.Generation), Problem: err.Error()})
			continue
		}
		sub := *rec
		sub.RootKeyPEM, sub.IntermediateKey = g.RootKeyPEM, g.IntermediateKey
		for _, p := range CheckKeys(&sub, root, inter, password) {
			p.Where = fmt.Sprintf("generation %d %s", g.Generation, p.Where)
			out = append(out, p)
		}
	}
	return out
}

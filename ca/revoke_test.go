package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// A renewal whose source is revoked while it is being signed is refused
// in the transaction that would store it.
func TestRenewalFromRevokedSourceIsNotStored(t *testing.T) {
	st, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	src, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "mallory"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke(ctx, src.Leaf.SerialNumber, pki.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	// The store write a renewal that passed its holder check makes.
	rec := *src.Record
	rec.Serial, rec.RenewedFrom = pki.FormatSerial(big.NewInt(424242)), src.Record.Serial
	if err := st.PutCertificate(ctx, &rec); !errors.Is(err, store.ErrRenewedFromRevoked) {
		t.Fatalf("renewal from a revoked source: %v", err)
	}
	if _, err := st.Certificate(ctx, big.NewInt(424242)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the refused renewal was stored")
	}
	// And through the authority, with the revoked certificate presented.
	if _, err := a.Renew(ctx, src.Leaf, nil, ""); !errors.Is(err, ErrRevoked) {
		t.Fatalf("renew with a revoked certificate: %v", err)
	}
}

// Revoking for key compromise follows the key into its renewals; revoking
// a superseded certificate does not touch the one that replaced it.
func TestRevokeTargetsFollowsRenewalsOnKeyCompromise(t *testing.T) {
	_, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	first, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "erin", Role: pki.RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.Renew(ctx, first.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if second.Record.RenewedFrom != first.Record.Serial {
		t.Fatalf("renewal records %q as its source, want %s", second.Record.RenewedFrom, first.Record.Serial)
	}
	third, err := a.Renew(ctx, second.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}

	res, err := a.RevokeTargets(ctx, []string{first.Record.Serial}, pki.Reason{Name: "superseded", Code: 4})
	if err != nil || len(res) != 1 {
		t.Fatalf("superseded: %d results, %v", len(res), err)
	}
	res, err = a.RevokeTargets(ctx, []string{second.Record.Serial}, pki.ReasonKeyCompromise)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range res {
		got[r.Record.Serial] = true
	}
	if len(res) != 2 || !got[second.Record.Serial] || !got[third.Record.Serial] {
		t.Fatalf("key-compromise revoked %v, want %s and its renewal %s", got, second.Record.Serial, third.Record.Serial)
	}
	// Names mean every unexpired certificate of that name.
	other, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "frank"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Renew(ctx, other.Leaf, nil, ""); err != nil {
		t.Fatal(err)
	}
	res, err = a.RevokeTargets(ctx, []string{"frank"}, pki.Reason{Name: "cessation-of-operation", Code: 5})
	if err != nil || len(res) != 2 {
		t.Fatalf("revoke by name: %d results, %v", len(res), err)
	}
	if _, err := a.RevokeTargets(ctx, []string{"frank", "nobody"}, pki.ReasonKeyCompromise); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown target: %v", err)
	}
}

func TestWeakCSRKeysAreRefused(t *testing.T) {
	_, a := newCA(t, pki.KeyECP256, "")
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"rsa-1024": rsa1024, "p-224": p224} {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "weak"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(der)
		if _, err := a.Issue(context.Background(), Request{Kind: pki.KindClient, CSR: csr, TTL: time.Hour}); !errors.Is(err, pki.ErrPolicy) {
			t.Errorf("%s: %v, want a policy refusal", name, err)
		}
	}
}

// Provenance travels as typed fields: an admin renewal records who made it
// and what it renews; a holder's renewal over mutual TLS records its
// source; neither is read back out of the issuer's name. An actor that
// happens to look like the old "renew:" prefix is only a name.
func TestProvenanceIsTyped(t *testing.T) {
	_, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	first, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "fay", Role: pki.RoleOperator, Actor: "renew:" + "00ff"})
	if err != nil {
		t.Fatal(err)
	}
	if r := first.Record; r.RenewedFrom != "" || r.TokenID != "" || r.IssuedBy != "renew:00ff" {
		t.Fatalf("plain issue: renewed from %q, token %q, by %q", r.RenewedFrom, r.TokenID, r.IssuedBy)
	}
	second, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "fay", Role: pki.RoleOperator, Actor: "socket:root", RenewedFrom: first.Record.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if r := second.Record; r.RenewedFrom != first.Record.Serial || r.IssuedBy != "socket:root" || r.TokenID != "" {
		t.Fatalf("admin renewal: renewed from %q, token %q, by %q", r.RenewedFrom, r.TokenID, r.IssuedBy)
	}
	third, err := a.Renew(ctx, second.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := third.Record; r.RenewedFrom != second.Record.Serial || r.TokenID != "" {
		t.Fatalf("holder renewal: renewed from %q, token %q", r.RenewedFrom, r.TokenID)
	}
	stored, err := a.Store().Certificate(ctx, third.Leaf.SerialNumber)
	if err != nil || stored.RenewedFrom != second.Record.Serial {
		t.Fatalf("stored renewal: %v %+v", err, stored)
	}
}
